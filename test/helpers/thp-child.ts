// Held for a whole test run by test/helpers/global-setup.ts: transparent huge pages only where a region asks for
// them (HostSettings.thpOnlyWhereAdvised), undone when its stdin closes — when the run ends, or when vitest dies.
// Says "ready", or "skip: WHY" when the machine's setting cannot be changed.
import { HostSettings } from '../../src/host/settings.js';

let host: HostSettings | null = null;
try {
  host = new HostSettings();
  const why = host.thpOnlyWhereAdvised();
  process.stdout.write(why ? `skip: ${why}\n` : 'ready\n');
} catch (e) {
  process.stdout.write(`skip: ${(e as Error).message}\n`);
}
process.stdin.resume();
process.stdin.on('end', () => {
  host?.restore();
  process.exit(0);
});
