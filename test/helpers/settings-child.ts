// A second pagesnap-like process that holds machine settings through HostSettings until its stdin closes (or it is
// killed): `PATH VALUE` sets one value (test/host-settings.test.ts); `thp-only-where-advised` the test run's policy
// for transparent huge pages (test/helpers/global-setup.ts). Says "ready", or "skip: WHY" when it cannot.
import { HostSettings } from '../../src/host/settings.js';

const [what, value] = process.argv.slice(2) as [string, string | undefined];
let host: HostSettings | null = null;
try {
  host = new HostSettings();
  const why = what === 'thp-only-where-advised' ? host.thpOnlyWhereAdvised() : (host.set(what, value!), null);
  process.stdout.write(why ? `skip: ${why}\n` : 'ready\n');
} catch (e) {
  process.stdout.write(`skip: ${(e as Error).message}\n`);
}
process.stdin.resume();
process.stdin.on('end', () => {
  host?.restore();
  process.exit(0);
});
