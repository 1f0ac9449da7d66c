/** Writing a command's side output (a picture, a report) to a file the user named. */
import { writeFileSync } from 'node:fs';
import { fromNodeError } from '../native/index.js';

export function writeOutput(path: string, data: string | Buffer): void {
  try {
    writeFileSync(path, data);
  } catch (e) {
    throw fromNodeError(e, 'write', path);
  }
}
