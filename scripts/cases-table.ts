/**
 * The README's table of inaccuracy cases, made from the model itself (src/model/rules.ts) so the two cannot
 * drift apart: test/readme.test.ts checks the README holds exactly this. Run it to print the table after changing a
 * rule: `node --import tsx scripts/cases-table.ts`.
 */
import { pathToFileURL } from 'node:url';
import { RULES, ALIASES } from '../src/model/rules.js';
import { CASE_IDS, type Verdict } from '../src/model/verdict.js';

const DOES: Record<Verdict, string> = {
  data: 'read and stored',
  zero: 'recorded as zero, not stored',
  hole: 'recorded as a hole, not stored',
  file: 'recorded as file-backed (stored with `--include-file-pages`)',
  object: 'read from its object, stored once per object',
  guard: 'recorded; restored as a guard',
  poison: 'recorded; restored as poison (SIGBUS)',
  retry: 'looked at again, then read',
  special: 'listed, never read',
  unreadable: 'recorded as unreadable, with why',
};

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function casesTable(): string {
  const rows = ['| case | what pagemap shows or hides | what pagesnap does | why |', '|---|---|---|---|'];
  for (const id of CASE_IDS) {
    const alias = ALIASES[id];
    if (alias) rows.push(`| ${id} | — | as ${alias.as} | ${cell(alias.why)} |`);
    // one row per rule; a verdict that depends on the options (clean file pages) is shown by its default
    for (const r of RULES.filter((x) => x.case === id)) {
      rows.push(`| ${id} | ${cell(r.name)} | ${DOES[typeof r.verdict === 'function' ? 'file' : r.verdict]} | ${cell(r.why)} |`);
    }
  }
  return rows.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) console.log(casesTable());
