/**
 * Beacon scoring after RITA v5 (activecm/rita, analysis/beacons.go): four sub-scores in 0..1 over the
 * connections of one pair, averaged with equal weights (RITA's default weights are 0.25 each).
 *
 * - timestamps: the intervals between distinct connection start times (seconds): symmetry (Bowley
 *   skewness) and dispersion (median absolute deviation relative to the median);
 * - data sizes: the same on the bytes the client sent per connection;
 * - histogram: connections in 24 bins over the dataset's span, scored by how flat it is (1 − coefficient
 *   of variation), or by how well two bar heights explain it (a beacon that alternates between two rates);
 * - duration: with at least 6 filled bins, the larger of the share of the dataset's span the pair covers
 *   and the longest run of consecutive filled bins (wrapping around) relative to 12.
 *
 * Written from RITA's description of the method; numbers are rounded to 3 decimals as RITA does, so
 * that a score of 1.0 means a perfect beacon.
 */

export interface BeaconInput {
  /** Connection start times, epoch ms, any order. */
  readonly startsMs: readonly number[];
  /** Bytes the client sent per connection (same order as startsMs). */
  readonly sizes: readonly number[];
  /** The dataset's span (epoch ms): first and last connection of any internal→external pair. */
  readonly datasetFromMs: number;
  readonly datasetToMs: number;
}

export interface BeaconScore {
  readonly score: number;
  readonly tsScore: number;
  readonly dsScore: number;
  readonly histScore: number;
  readonly durScore: number;
  /** Distinct start times (seconds) and the intervals between them. */
  readonly uniqueTimestamps: number;
  readonly intervalMedian: number;
  readonly intervalMad: number;
  readonly intervalSkew: number;
  /** The most frequent interval and how often it occurred. */
  readonly intervalMode: number;
  readonly intervalModeCount: number;
  readonly sizeMedian: number;
  readonly sizeMad: number;
  readonly sizeSkew: number;
  /** Histogram bins (of 24) with at least one connection, and the longest run of them. */
  readonly filledBins: number;
  readonly longestRun: number;
  readonly histogram: readonly number[];
}

const BINS = 24;
/** RITA's DurMinHours and DurIdealNumberOfConsistentHours defaults. */
const DURATION_MIN_BINS = 6;
const DURATION_IDEAL_RUN = 12;
/** RITA's HistModeSensitivity, HistBimodalOutlierRemoval and HistBimodalMinHours defaults. */
const MODE_SENSITIVITY = 0.05;
const BIMODAL_OUTLIERS = 1;
const BIMODAL_MIN_BINS = 11;

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function median(sorted: readonly number[]): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const mid = n >> 1;
  return n % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Quartiles of sorted data: Q2 is the median; Q1 and Q3 the medians of the lower and upper halves,
 * the middle element excluded when the count is odd (the method of the Go stats package RITA uses).
 */
export function quartiles(sorted: readonly number[]): [number, number, number] {
  const n = sorted.length;
  const half = n >> 1;
  const lower = sorted.slice(0, half);
  const upper = sorted.slice(n % 2 === 1 ? half + 1 : half);
  return [median(lower), median(sorted), median(upper)];
}

/**
 * Bowley skewness (Q1 + Q3 − 2·Q2) / (Q3 − Q1), taken as 0 when the interquartile range is under 10
 * (units of the data: seconds or bytes) or the median sits on a quartile: a few seconds of jitter or
 * a few bytes of size difference say nothing about asymmetry.
 */
export function bowleySkew(sorted: readonly number[]): number {
  const [q1, q2, q3] = quartiles(sorted);
  const den = q3 - q1;
  if (den >= 10 && q2 !== q1 && q2 !== q3) return (q1 + q3 - 2 * q2) / den;
  return 0;
}

export function medianAbsoluteDeviation(sorted: readonly number[]): number {
  const m = median(sorted);
  return median(sorted.map((x) => Math.abs(x - m)).sort((a, b) => a - b));
}

/** Mean of the skewness score 1 − |skew| and the dispersion score (median − MAD) / median. */
function statisticalScore(
  sorted: readonly number[],
  defaultMadScore: number,
): { score: number; skew: number; mad: number; median: number } {
  const skew = bowleySkew(sorted);
  const mad = medianAbsoluteDeviation(sorted);
  const m = median(sorted);
  let madScore = m >= 1 ? (m - mad) / m : defaultMadScore;
  if (!(madScore >= 0)) madScore = 0;
  return { score: round3((1 - Math.abs(skew) + madScore) / 2), skew, mad, median: m };
}

/** Connection counts in `BINS` equal bins from the dataset's first to last time. */
export function histogram(startsSec: readonly number[], fromSec: number, toSec: number): number[] {
  const bins = new Array<number>(BINS).fill(0);
  const span = Math.max(1, toSec - fromSec);
  for (const t of startsSec) {
    const i = Math.floor(((t - fromSec) / span) * BINS);
    bins[Math.min(BINS - 1, Math.max(0, i))]!++;
  }
  return bins;
}

/** Filled bins and the longest run of consecutive filled bins, wrapping from the end to the start. */
export function runs(bins: readonly number[]): { filled: number; longest: number } {
  const filled = bins.filter((b) => b > 0).length;
  let longest = 0;
  let current = 0;
  for (let i = 0; i < bins.length * 2; i++) {
    if (bins[i % bins.length]! > 0) {
      current++;
      longest = Math.max(longest, current);
    } else {
      current = 0;
    }
  }
  return { filled, longest: Math.min(longest, bins.length) };
}

function coefficientOfVariationScore(bins: readonly number[]): number {
  const total = bins.reduce((s, b) => s + b, 0);
  if (total <= 0) return 0;
  const mean = total / bins.length;
  const sd = Math.sqrt(bins.reduce((s, b) => s + (b - mean) ** 2, 0) / bins.length);
  const cv = sd / mean;
  return cv > 1 ? 0 : round3(1 - cv);
}

/**
 * The share of filled bins whose heights fall in the two most common height classes (classes 5 % of
 * the tallest bar wide), one outlier bin forgiven; only with at least 11 filled bins.
 */
function bimodalFitScore(bins: readonly number[], filled: number): number {
  if (filled < BIMODAL_MIN_BINS) return 0;
  const tallest = Math.max(...bins);
  const width = Math.max(1, Math.ceil(tallest * MODE_SENSITIVITY));
  const classes = new Map<number, number>();
  for (const b of bins) {
    if (b <= 0) continue;
    const c = Math.floor(b / width) * width;
    classes.set(c, (classes.get(c) ?? 0) + 1);
  }
  const top = [...classes.values()].sort((x, y) => y - x);
  const fit = ((top[0] ?? 0) + (top[1] ?? 0)) / Math.max(filled - BIMODAL_OUTLIERS, 1);
  return Math.min(1, round3(fit));
}

function mode(sorted: readonly number[]): { value: number; count: number } {
  let best = { value: sorted[0] ?? 0, count: 0 };
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j < sorted.length && sorted[j] === sorted[i]) j++;
    if (j - i > best.count) best = { value: sorted[i]!, count: j - i };
    i = j;
  }
  return best;
}

/** null when there are fewer than 4 distinct start times (3 intervals), RITA's minimum. */
export function scoreBeacon(input: BeaconInput): BeaconScore | null {
  const startsSec = [...new Set(input.startsMs.map((t) => Math.floor(t / 1000)))].sort((a, b) => a - b);
  if (startsSec.length < 4) return null;
  const intervals = startsSec
    .slice(1)
    .map((t, i) => t - startsSec[i]!)
    .sort((a, b) => a - b);
  const sizes = [...input.sizes].sort((a, b) => a - b);
  // Intervals default to a perfect dispersion score below 1 s (RITA's default for timestamps), sizes to 0.
  const ts = statisticalScore(intervals, 1);
  const ds = statisticalScore(sizes, 0);
  const fromSec = Math.floor(input.datasetFromMs / 1000);
  const toSec = Math.max(fromSec + 1, Math.ceil(input.datasetToMs / 1000));
  const bins = histogram(startsSec, fromSec, toSec);
  const { filled, longest } = runs(bins);
  const histScore = Math.max(coefficientOfVariationScore(bins), bimodalFitScore(bins, filled));
  let durScore = 0;
  if (filled >= DURATION_MIN_BINS) {
    const coverage = Math.min(
      1,
      Math.ceil(((startsSec.at(-1)! - startsSec[0]!) / (toSec - fromSec)) * 1000) / 1000,
    );
    const consistency = Math.min(1, Math.ceil((longest / DURATION_IDEAL_RUN) * 1000) / 1000);
    durScore = Math.max(coverage, consistency);
  }
  const m = mode(intervals);
  return {
    score: round3((ts.score + ds.score + histScore + durScore) / 4),
    tsScore: ts.score,
    dsScore: ds.score,
    histScore,
    durScore,
    uniqueTimestamps: startsSec.length,
    intervalMedian: ts.median,
    intervalMad: ts.mad,
    intervalSkew: round3(ts.skew),
    intervalMode: m.value,
    intervalModeCount: m.count,
    sizeMedian: ds.median,
    sizeMad: ds.mad,
    sizeSkew: round3(ds.skew),
    filledBins: filled,
    longestRun: longest,
    histogram: bins,
  };
}
