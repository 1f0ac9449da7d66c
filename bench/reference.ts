/**
 * Published figures of peers, for reference rows beside the measured ratios: they come from
 * ../shared/reference/anchors.md (CRIU 4.2 built from source, on a machine of this kind, random incompressible data,
 * images in the page cache), not from this run, so their ratios only place pagesnap, they are not goals.
 */
export interface Published {
  what: string;
  lowMs: number;
  highMs: number;
  bytes?: number;
}

export const CRIU = {
  dump1GiB: { what: 'CRIU 4.2 dump 1 GiB', lowMs: 290, highMs: 360, bytes: 1081e6 },
  restore1GiB: { what: 'CRIU 4.2 restore 1 GiB', lowMs: 300, highMs: 370 },
  lazy1GiB: { what: 'CRIU 4.2 lazy restore 1 GiB until full', lowMs: 200, highMs: 750 },
} satisfies Record<string, Published>;

export const range = (p: Published) => `${p.what} ${p.lowMs}–${p.highMs} ms`;
export const mid = (p: Published) => (p.lowMs + p.highMs) / 2;
