import { describe, expect, test } from 'vitest';
import { bowleySkew, histogram, medianAbsoluteDeviation, quartiles, runs, scoreBeacon } from './score.js';

const DAY_MS = 86_400_000;

describe('beacon scoring (after RITA v5 analysis/beacons.go)', () => {
  test('quartiles leave the median out of both halves for odd counts', () => {
    expect(quartiles([1, 2, 3, 4, 5, 6, 7])).toEqual([2, 4, 6]);
    expect(quartiles([1, 2, 3, 4, 5, 6, 7, 8])).toEqual([2.5, 4.5, 6.5]);
  });

  test('Bowley skewness is 0 below an interquartile range of 10 and signed above it', () => {
    expect(bowleySkew([295, 298, 300, 302, 305])).toBe(0);
    // Q1 = 20, Q2 = 30, Q3 = 100: a long right tail.
    expect(bowleySkew([10, 20, 25, 30, 60, 100, 200])).toBeCloseTo((20 + 100 - 60) / 80, 6);
    expect(medianAbsoluteDeviation([1, 2, 3, 4, 100])).toBe(1);
  });

  test('histogram bins and runs wrap around from the end to the start', () => {
    const bins = histogram([0, 1, 97, 99], 0, 100);
    expect(bins).toHaveLength(24);
    expect(bins[0]).toBe(2);
    expect(bins[23]).toBe(2);
    expect(runs(bins)).toEqual({ filled: 2, longest: 2 });
  });

  test('a perfect beacon over the whole day scores 1 in every part', () => {
    const starts = Array.from({ length: 288 }, (_, i) => i * 300_000);
    const s = scoreBeacon({
      startsMs: starts,
      sizes: starts.map(() => 512),
      datasetFromMs: 0,
      datasetToMs: DAY_MS,
    });
    expect(s).toMatchObject({
      score: 1,
      tsScore: 1,
      dsScore: 1,
      histScore: 1,
      durScore: 1,
      intervalMedian: 300,
    });
  });

  test('the same beacon for only 2 hours of a day loses the histogram and duration parts', () => {
    const starts = Array.from({ length: 24 }, (_, i) => i * 300_000);
    const s = scoreBeacon({
      startsMs: starts,
      sizes: starts.map(() => 512),
      datasetFromMs: 0,
      datasetToMs: DAY_MS,
    })!;
    expect(s.tsScore).toBe(1);
    expect(s.histScore).toBe(0);
    expect(s.durScore).toBe(0);
    expect(s.score).toBe(0.5);
  });

  test('fewer than 4 distinct start times are not scored', () => {
    expect(
      scoreBeacon({
        startsMs: [0, 1000, 2000, 60_000],
        sizes: [1, 1, 1, 1],
        datasetFromMs: 0,
        datasetToMs: DAY_MS,
      }),
    ).not.toBeNull();
    expect(
      scoreBeacon({
        startsMs: [0, 1000, 1500, 60_000],
        sizes: [1, 1, 1, 1],
        datasetFromMs: 0,
        datasetToMs: DAY_MS,
      }),
    ).toBeNull();
  });
});
