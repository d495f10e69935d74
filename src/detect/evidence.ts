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

/** A quantity for a title: 950, 12.3k, 4.5M, 1.2G (three significant digits at most). */
export function formatQuantity(value: number): string {
  const units: ReadonlyArray<[number, string]> = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, suffix] of units) {
    if (Math.abs(value) >= scale) return `${Number((value / scale).toPrecision(3))}${suffix}`;
  }
  return String(Number(value.toPrecision(3)));
}

/** IANA protocol numbers as analysts read them (others as their number). */
export function protocolName(proto: number): string {
  const names: Record<number, string> = {
    1: 'ICMP',
    6: 'TCP',
    17: 'UDP',
    47: 'GRE',
    50: 'ESP',
    58: 'ICMPv6',
  };
  return names[proto] ?? `proto ${proto}`;
}

/** The larger of two numeric evidence values (absent or non-numeric counts as 0). */
export function maxNumber(a: unknown, b: unknown): number {
  return Math.max(typeof a === 'number' ? a : 0, typeof b === 'number' ? b : 0);
}
