/**
 * pagesnap as a library: read a live process's regions and page states, audit pagemap, snapshot a process, read,
 * compare and flatten snapshots, put them back through userfaultfd, and the kernel interfaces beneath.
 *   import { inspect, audit, Pagemap, readRegions, dump, SnapshotReader, diffSnapshots, flatten, restore, serve } from 'pagesnap';
 */
export { inspect, inspectPages, type InspectReport, type PagesReport, type PageCounts, type RegionReport } from './analyze/inspect.js';
export {
  Pagemap, readRegions, readIdentity, parseMaps, parseMapsLine, parseSmaps, classifyRegion, kernelConfig, KpageReader,
  decodeEntry, type Region, type PageRun, type PageState, type RegionKind, type MapsEntry, type SmapsEntry,
  type PagemapMethod,
} from './proc/index.js';
export { audit, type AuditOptions, type AuditReport } from './analyze/audit.js';
export { dump, type DumpOptions, type DumpSummary } from './dump/dump.js';
export { SnapshotReader } from './snapshot/reader.js';
export { diffSnapshots, type DiffReport } from './analyze/diff.js';
export { flatten, type FlattenOptions, type FlattenSummary } from './snapshot/flatten.js';
export { restore, type RestoreOptions, type RestoreResult } from './restore/restore.js';
export { serve, type ServeOptions, type ServeEvent } from './restore/serve.js';
export { HostSettings } from './host/settings.js';
export { PagesnapError, NativeError } from './native/index.js';
export * as native from './native/index.js';
