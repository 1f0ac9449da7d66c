// What a newcomer meets before any memory: `--help` with examples for every command, shell completion, and the
// package `npm pack` makes, installed into an empty project and run with npx.
import { describe, it, expect } from 'vitest';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { readFileSync, writeFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { cli } from './helpers/cli.js';
import { scratchDir } from './helpers/scratch.js';

const ROOT = resolve(import.meta.dirname, '..');
const dir = scratchDir('package');

/** The environment without what `npm test` exports to its children, so a nested npm behaves as a user's would. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
const run = (cmd: string, args: string[], opts: SpawnSyncOptions = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: cleanEnv, timeout: 300_000, ...opts });
  return { status: r.status, out: String(r.stdout), err: String(r.stderr) };
};

const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8')) as {
  commands: Record<string, { examples?: ({ command: string; description: string } | string)[] }>;
};
const ours = Object.keys(manifest.commands);

describe('help and completion', () => {
  it('every command has --help with examples of itself', () => {
    expect(ours.length).toBeGreaterThanOrEqual(11);
    for (const id of ours) {
      const examples = manifest.commands[id]!.examples ?? [];
      expect(examples.length, id).toBeGreaterThan(0);
      for (const e of examples) expect(typeof e === 'string' ? e : e.command, id).toMatch(new RegExp(`^<%= config.bin %> ${id}\\b`));
      const help = cli([id, '--help']);
      expect(help.code, id).toBe(0);
      expect(help.stdout, id).toMatch(new RegExp(`EXAMPLES[\\s\\S]*\\$ pagesnap ${id}\\b`));
    }
  });

  it('bash completes commands and their flags', () => {
    const env = { ...cleanEnv, XDG_CACHE_HOME: join(dir, 'cache') };
    const setup = run(process.execPath, [join(ROOT, 'bin/run.js'), 'autocomplete', 'script', 'bash'], { env });
    expect(setup.status, setup.err).toBe(0);
    // the completion functions are written on first use (`pagesnap autocomplete bash` prints how to install them)
    expect(run(process.execPath, [join(ROOT, 'bin/run.js'), 'autocomplete', 'bash'], { env }).status).toBe(0);
    const complete = (...words: string[]) => run('bash', ['-c', [
      setup.out.trim(),
      `COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; COMP_LINE='${words.join(' ')}'`,
      '_pagesnap_autocomplete; printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n')], { env }).out.split('\n').map((w) => w.trim()).filter(Boolean);
    expect(complete('pagesnap', 'di')).toEqual(['diff']);
    expect(complete('pagesnap', 're')).toEqual(['restore']);
    expect(complete('pagesnap', 'dump', '--pa')).toEqual(['--parent']);
    expect(complete('pagesnap', 'restore', '--l')).toEqual(['--lazy']);
  });
});

describe('npm pack', () => {
  it('makes a package that installs into an empty project and runs with npx', async () => {
    const pack = run('npm', ['pack', '--pack-destination', dir, '--json'], { cwd: ROOT });
    expect(pack.status, pack.err).toBe(0);
    const info = JSON.parse(pack.out.slice(pack.out.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const files = info[0]!.files.map((f) => f.path);
    expect(files).toContain('bin/run.js');
    expect(files).toContain('dist/commands/dump.js');
    expect(files).toContain('native/host.c');
    expect(files).toContain('oclif.manifest.json');
    expect(files).toContain('FORMAT.md'); // the README links it
    expect(files.filter((f) => /^(test|bench|tmp|scripts|snapshots|node_modules)\//.test(f) || f.startsWith('dist/test/'))).toEqual([]);

    const project = join(dir, 'project');
    run('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-pagesnap', version: '1.0.0', private: true }));
    const install = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, info[0]!.filename)], { cwd: project });
    expect(install.status, install.err).toBe(0);
    const installed = join(project, 'node_modules', 'pagesnap');
    expect(readdirSync(join(installed, 'native', 'build')).sort()).toEqual(['libpagesnap.so', 'pagesnap-host']);

    const npx = (...args: string[]) => run('npx', ['--no-install', 'pagesnap', ...args], { cwd: project });
    const version = npx('--version');
    expect(version.status, version.err).toBe(0);
    expect(version.out).toMatch(/^pagesnap\/\d+\.\d+\.\d+ linux-/);

    // the installed copy does real work: dump a live process, verify the file, restore it
    const fx = await Fixture.start(['anon', 'shmem']);
    try {
      const file = join(dir, 'from-package.psnap');
      const dump = npx('dump', String(fx.pid), '-o', file, '--json');
      expect(dump.status, dump.err).toBe(0);
      expect((JSON.parse(dump.out) as { pagesStored: number }).pagesStored).toBeGreaterThan(0);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(npx('verify', file).status).toBe(0);
      const restore = npx('restore', file, '--verify', '--json');
      expect(restore.status, restore.err).toBe(0);
      expect((JSON.parse(restore.out) as { verify: { mismatches: number } }).verify.mismatches).toBe(0);
    } finally {
      await fx.stop();
    }
  }, 300_000);
});
