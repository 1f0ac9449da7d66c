/**
 * pagesnap as a library: read a live process's regions and page states, and the kernel interfaces beneath.
 *   import { inspect, Pagemap, readRegions } from 'pagesnap';
 */
export { inspect, inspectPages, type InspectReport, type PagesReport, type PageCounts, type RegionReport } from './analyze/inspect.js';
export {
  Pagemap, readRegions, readIdentity, parseMaps, parseMapsLine, parseSmaps, classifyRegion, kernelConfig, KpageReader,
  decodeEntry, type Region, type PageRun, type PageState, type RegionKind, type MapsEntry, type SmapsEntry,
  type PagemapMethod,
} from './proc/index.js';
export { HostSettings } from './host/settings.js';
export { PagesnapError, NativeError } from './native/index.js';
export * as native from './native/index.js';
