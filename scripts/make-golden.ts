/**
 * Writes snapshots/golden-v1.psnap: a small snapshot made by the writer of this version, with the synthetic layout
 * of test/helpers/synthetic.ts. Run once per format version; the test suite reads it forever after.
 */
import { rmSync } from 'node:fs';
import { writeSynthetic } from '../test/helpers/synthetic.js';

const path = new URL('../snapshots/golden-v1.psnap', import.meta.url).pathname;
rmSync(path, { force: true });
await writeSynthetic(path);
console.log(`wrote ${path}`);
