/** Binary search over ascending keys: the last index among the first `n` whose key is ≤ x (0 if none is). */
export function lastAtOrBelow(key: (i: number) => number, n: number, x: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (key(mid) <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
