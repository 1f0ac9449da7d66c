/**
 * pagesnap as a library: read a live process's regions and page states, snapshot it, read snapshots, put them
 * back through userfaultfd, and the kernel interfaces beneath.
 *   import { inspect, Pagemap, readRegions, dump, SnapshotReader, restore, serve } from 'pagesnap';
 */
export { inspect, inspectPages, type InspectReport, type PagesReport, type PageCounts, type RegionReport } from './analyze/inspect.js';
export {
  Pagemap, readRegions, readIdentity, parseMaps, parseMapsLine, parseSmaps, classifyRegion, kernelConfig, KpageReader,
  decodeEntry, type Region, type PageRun, type PageState, type RegionKind, type MapsEntry, type SmapsEntry,
  type PagemapMethod,
} from './proc/index.js';
export { dump, type DumpOptions, type DumpSummary } from './dump/dump.js';
export { SnapshotReader } from './snapshot/reader.js';
export { restore, type RestoreOptions, type RestoreResult } from './restore/restore.js';
export { serve, type ServeOptions, type ServeEvent } from './restore/serve.js';
export { HostSettings } from './host/settings.js';
export { PagesnapError, NativeError } from './native/index.js';
export * as native from './native/index.js';
