/**
 * oclif's command_not_found hook: one line naming the word, the closest command when one is near, and the list,
 * instead of oclif's own " ›   Error: command X not found". Usage error: exit 2.
 */
import type { Hook } from '@oclif/core';

/** Edit distance (insertions, deletions, substitutions), for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

const hook: Hook<'command_not_found'> = async function (opts) {
  // with spaces as topic separators oclif joins the words it was given ("dumpp 1" → "dumpp:1"): the first is the command
  const word = opts.id.split(':')[0]!;
  const ids = opts.config.commands.filter((c) => !c.hidden).map((c) => c.id).sort();
  const near = ids.map((id) => ({ id, d: distance(word, id) })).sort((x, y) => x.d - y.d)[0];
  const guess = near && near.d <= 2 ? `did you mean ${near.id}? ` : '';
  process.stderr.write(`${opts.config.bin}: "${word}" is not a command — ${guess}commands: ${ids.join(', ')} (${opts.config.bin} --help)\n`);
  process.exit(2);
};

export default hook;
