/**
 * The address space as a heatmap: one labelled band per region, one cell per page (or per bucket of pages in a big
 * region), coloured by class. audit colours what the model decided and what a pagemap-only dumper would do with
 * it (a person sees at a glance where pagemap is wrong: red, data it would lose); diff colours what changed.
 */
import type { AuditReport, AuditRun } from '../analyze/audit.js';
import { bytes, hex } from './format.js';
import { Canvas, hexColor } from './png.js';

export interface HeatmapOptions {
  /** cells per row */
  columns?: number;
  /** rows at most per region: bigger regions bucket several pages into a cell */
  maxRows?: number;
}

/** A colour class; a bucket of pages takes the colour of its most important page (the first class listed wins). */
export interface HeatClass {
  key: string;
  color: string;
  label: string;
}

export interface HeatBand {
  label: string;
  /** draw the label in the colour of this class (a band that matters) */
  labelClass?: string;
  pages: number;
  /** classes of runs of pages; pages in no run take the last class */
  runs: { offset: number; pages: number; cls: string }[];
}

export interface HeatmapDoc {
  title: string;
  classes: HeatClass[];
  sections: { title: string; bands: HeatBand[] }[];
}

/** The class index of each cell of a band: `pages / cells` pages per cell, the most important one wins. */
export function bandCells(b: HeatBand, classes: readonly HeatClass[], cells: number): number[] {
  const rank = new Map(classes.map((c, i) => [c.key, i]));
  const none = classes.length - 1;
  const per = Math.max(1, Math.ceil(b.pages / cells));
  const out = new Array<number>(Math.ceil(b.pages / per)).fill(none);
  for (const run of b.runs) {
    const k = rank.get(run.cls) ?? none;
    if (k === none) continue;
    for (let c = Math.floor(run.offset / per); c <= Math.floor((run.offset + run.pages - 1) / per); c++) if (k < out[c]!) out[c] = k;
  }
  return out;
}

/** audit's classes, most important first. */
export const AUDIT_CLASSES: HeatClass[] = [
  { key: 'lost', color: '#d62728', label: 'data a pagemap-only dumper loses' },
  { key: 'marker', color: '#9467bd', label: 'marker it takes for swap (guard, poison, uffd-wp)' },
  { key: 'zero', color: '#e7ba52', label: 'zero page it stores for nothing' },
  { key: 'file', color: '#9ecae1', label: 'clean file page it stores for nothing' },
  { key: 'kept', color: '#2ca02c', label: 'data, kept' },
  { key: 'special', color: '#7f7f7f', label: 'kernel or device page, never read' },
  { key: 'empty', color: '#eeeeee', label: 'nothing there' },
];

function auditClass(r: AuditRun): string {
  if (r.status === 'lost') return 'lost';
  if (r.status === 'kept') return 'kept';
  if (r.status === 'needless') {
    if (r.verdict === 'zero') return 'zero';
    if (r.verdict === 'file') return 'file';
    if (r.verdict === 'special') return 'special';
    return 'marker';
  }
  return 'empty';
}

/** audit's picture: every region with something to see (or every one, with `all`). */
export function auditHeatmap(rep: AuditReport, all = false): HeatmapDoc {
  return {
    title: `pagesnap audit · kernel ${rep.kernel} · naive rule: keep what pagemap shows PRESENT or SWAPPED`,
    classes: AUDIT_CLASSES,
    sections: rep.processes.map((p) => {
      const lost = p.regions.reduce((s, r) => s + r.lost.pages, 0);
      return {
        title: `process ${p.process.pid} (${p.process.comm}) · ${lost ? `${lost} pages a pagemap-only dumper loses` : 'nothing lost'}`,
        bands: p.regions
          .filter((r) => all || r.lost.pages > 0 || r.runs.some((x) => x.status !== 'empty'))
          .map((r) => ({
            label: `${hex(r.start)}-${hex(r.end)} ${r.kind} ${bytes(r.pages * 4096)}${r.path ? ` ${r.path}` : ''}${r.lost.pages ? ` · LOST ${r.lost.pages} (${r.lost.cases.map((c) => c.case).join(', ')})` : ''}`,
            labelClass: r.lost.pages ? 'lost' : undefined,
            pages: r.pages,
            runs: r.runs.map((x) => ({ offset: x.offset, pages: x.pages, cls: auditClass(x) })),
          })),
      };
    }),
  };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

type Item =
  | { t: 'rect'; x: number; y: number; w: number; h: number; color: string }
  | { t: 'text'; x: number; y: number; s: string; color: string; bold?: boolean };

/** Where everything goes: the drawing both the SVG and the PNG are made from. */
function layout(doc: HeatmapDoc, opts: HeatmapOptions): { width: number; height: number; items: Item[] } {
  const columns = opts.columns ?? 128;
  const maxRows = opts.maxRows ?? 8;
  const cell = 6;
  const gap = 1;
  const line = 14;
  const charWidth = 6.7;
  const width = 16 + columns * (cell + gap) + 16;
  const items: Item[] = [];
  let y = 20;
  const text = (x: number, yy: number, s: string, color = '#000000', bold = false) => items.push({ t: 'text', x, y: yy, s, color, bold });
  text(16, y, doc.title, '#000000', true);
  y += line + 4;
  let lx = 16;
  for (const c of doc.classes) {
    const w = 14 + c.label.length * charWidth + 16;
    if (lx + w > width - 16) {
      lx = 16;
      y += line;
    }
    items.push({ t: 'rect', x: lx, y: y - 9, w: 10, h: 10, color: c.color });
    text(lx + 14, y, c.label);
    lx += w;
  }
  y += line + 8;
  const colorOf = new Map(doc.classes.map((c) => [c.key, c.color]));
  for (const sec of doc.sections) {
    text(16, y, sec.title, '#000000', true);
    y += line + 2;
    for (const b of sec.bands) {
      const cells = bandCells(b, doc.classes, columns * maxRows);
      const per = Math.max(1, Math.ceil(b.pages / (columns * maxRows)));
      text(16, y, `${b.label}${per > 1 ? ` (${per} pages a cell)` : ''}`, (b.labelClass && colorOf.get(b.labelClass)) || '#000000');
      y += 4;
      cells.forEach((k, i) => {
        items.push({ t: 'rect', x: 16 + (i % columns) * (cell + gap), y: y + Math.floor(i / columns) * (cell + gap), w: cell, h: cell, color: doc.classes[k]!.color });
      });
      y += Math.ceil(cells.length / columns) * (cell + gap) + line;
    }
    y += 6;
  }
  return { width: Math.ceil(width), height: Math.ceil(y), items };
}

export function heatmapSvg(doc: HeatmapDoc, opts: HeatmapOptions = {}): string {
  const { width, height, items } = layout(doc, opts);
  const body = items.map((i) =>
    i.t === 'rect'
      ? `<rect x="${i.x}" y="${i.y}" width="${i.w}" height="${i.h}" fill="${i.color}"/>`
      : `<text x="${i.x}" y="${i.y}"${i.color !== '#000000' ? ` fill="${i.color}"` : ''}${i.bold ? ' font-weight="bold"' : ''}>${esc(i.s)}</text>`,
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

export function heatmapPng(doc: HeatmapDoc, opts: HeatmapOptions = {}): Buffer {
  const { width, height, items } = layout(doc, opts);
  const c = new Canvas(width, height);
  for (const i of items) {
    if (i.t === 'rect') c.rect(Math.round(i.x), Math.round(i.y), i.w, i.h, hexColor(i.color));
    else c.text(Math.round(i.x), Math.round(i.y), i.s, hexColor(i.color));
  }
  return c.png();
}
