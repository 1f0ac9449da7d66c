/** Binary search over ascending keys: the first index among the first `n` whose key is > x (n if none is). */
export function firstAbove(key: (i: number) => number, n: number, x: number): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(mid) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Binary search over ascending keys: the last index among the first `n` whose key is ≤ x (0 if none is). */
export function lastAtOrBelow(key: (i: number) => number, n: number, x: number): number {
  return Math.max(0, firstAbove(key, n, x) - 1);
}
