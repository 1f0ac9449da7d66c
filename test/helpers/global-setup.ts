// Once for the whole run: the scenarios' layouts are counted in base pages, with huge pages only where a region asks
// for them; a machine that hands out huge or multi-size pages everywhere would fill in the pages about each one
// written. A child process holds that setting for the run (so it is undone even if vitest is killed outright).
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export default async function setup(): Promise<() => Promise<void>> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/settings-child.ts', 'thp-only-where-advised'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const said = line.toString().trim();
  if (said !== 'ready') console.log(`transparent huge pages left as the machine has them (${said}): scenarios that count pages may differ`);
  return async () => {
    const done = once(child, 'exit');
    child.stdin!.end();
    await done;
  };
}
