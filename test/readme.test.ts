// The README is what a newcomer trusts: the parts of it made from the code must say what the code does.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { casesTable } from '../scripts/cases-table.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('lists every inaccuracy case as the model decides it (regenerate: node --import tsx scripts/cases-table.ts)', () => {
    expect(readme).toContain(casesTable());
  });

  it('names a test command, a start command and the install step that exist', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: Record<string, string> };
    for (const s of ['start', 'test', 'bench']) {
      expect(readme).toMatch(new RegExp(`npm (run )?${s}\\b`));
      expect(pkg.scripts[s], s).toBeDefined();
    }
  });
});
