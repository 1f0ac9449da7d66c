// A second pagesnap-like process for test/host-settings.test.ts: sets PATH to VALUE through HostSettings, says
// "ready", and restores when its stdin closes (or is killed before that).
import { HostSettings } from '../../src/host/settings.js';

const [path, value] = process.argv.slice(2) as [string, string];
const host = new HostSettings();
host.set(path, value);
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  host.restore();
  process.exit(0);
});
