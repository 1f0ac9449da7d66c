import { HostSettings } from '../../src/host/settings.js';

export interface Prepared {
  host: HostSettings;
  /** Why a machine feature could not be set up (null when it is ready). */
  unavailable: Record<'swap' | 'ksm' | 'thp' | 'hugetlb', string | null>;
}

/** Turn on what the scenarios need; the caller restores in afterAll (and the journal covers a crash). */
export function prepareHost(opts: { hugepages?: number } = {}): Prepared {
  const host = new HostSettings();
  const attempt = (f: () => string | null) => {
    try {
      return f();
    } catch (e) {
      return (e as Error).message;
    }
  };
  return {
    host,
    unavailable: {
      swap: attempt(() => host.ensureSwap()),
      ksm: attempt(() => host.enableKsm()),
      thp: attempt(() => host.enableThp()),
      hugetlb: attempt(() => host.reserveHugepages(opts.hugepages ?? 4)),
    },
  };
}
