/** What a path is, as errors name it ("… is a directory, not a regular file"; "… is a regular file, not a socket"). */
import type { Stats } from 'node:fs';

export const describeFile = (st: Stats): string =>
  st.isFile() ? 'a regular file' : st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a special file';
