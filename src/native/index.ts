export * from './constants.js';
export * from './errors.js';
export * from './struct.js';
export * from './syscalls.js';
export * from './pagemap-scan.js';
export * from './uffd.js';
export { view } from './libc.js';
export * from './xxhash.js';
export * from './exit.js';
