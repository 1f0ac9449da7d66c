import { Fixture } from '/work/main/fixtures/driver.js';
const fx = await Fixture.start(['bench-regions']);
console.log(fx.pid);
await new Promise((r) => setTimeout(r, 900000));
await fx.stop();
