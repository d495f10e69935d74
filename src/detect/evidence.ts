/** Helpers detectors share to merge evidence across windows of one finding. */

/** The union of two lists of numbers or strings (as found in evidence), sorted, at most `max`. */
export function mergeSampleLists(a: unknown, b: unknown, max: number): Array<number | string> {
  const items = new Set<number | string>();
  for (const list of [a, b]) {
    if (!Array.isArray(list)) continue;
    for (const x of list) if (typeof x === 'number' || typeof x === 'string') items.add(x);
  }
  const sorted = [...items].sort((x, y) =>
    typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y)),
  );
  return sorted.slice(0, max);
}
