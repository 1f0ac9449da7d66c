/** What a path that is not a regular file is, as errors name it ("… is a directory, not a regular file"). */
import type { Stats } from 'node:fs';

export const describeFile = (st: Stats): string =>
  st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a special file';
