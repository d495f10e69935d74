import { expect, test } from 'vitest';
import { TACTICS, type TacticId } from '../detect/attack.js';
import { tacticShortname, toNavigatorLayer } from './attack.js';

test("tactic short names are ATT&CK's (x_mitre_shortname)", () => {
  expect(
    Object.fromEntries((Object.keys(TACTICS) as TacticId[]).map((t) => [t, tacticShortname(t)])),
  ).toEqual({
    TA0043: 'reconnaissance',
    TA0001: 'initial-access',
    TA0003: 'persistence',
    TA0006: 'credential-access',
    TA0007: 'discovery',
    TA0008: 'lateral-movement',
    TA0010: 'exfiltration',
    TA0011: 'command-and-control',
    TA0040: 'impact',
  });
});

test('the layer has one entry per technique and tactic, scored by findings; disabled coverage is greyed', () => {
  const technique = (id: string, tactic_ids: string[], findings: number, covered: boolean) => ({
    id,
    name: id,
    url: `https://attack.mitre.org/techniques/${id}/`,
    tactic_ids,
    detectors: covered ? ['d'] : ['off'],
    covered,
    findings,
    open_findings: 0,
    last_seen: null,
  });
  const layer = toNavigatorLayer(
    {
      attack_version: '16',
      domain: 'enterprise-attack',
      tactics: [],
      techniques: [
        technique('T1133', ['TA0001', 'TA0003'], 4, true),
        technique('T1046', ['TA0007'], 0, true),
        technique('T1571', ['TA0011'], 0, false),
      ],
    },
    { from: '2026-01-01T00:00:00Z' },
  );
  expect(layer.versions).toEqual({ attack: '16', navigator: '4.9.1', layer: '4.5' });
  expect(layer.techniques.map((t) => [t.techniqueID, t.tactic, t.score, t.enabled, t.color])).toEqual([
    ['T1133', 'initial-access', 4, true, ''],
    ['T1133', 'persistence', 4, true, ''],
    ['T1046', 'discovery', 0, true, ''],
    ['T1571', 'command-and-control', 0, false, '#e0e0e0'],
  ]);
  expect(layer.gradient).toEqual({ colors: expect.any(Array), minValue: 0, maxValue: 4 });
  expect(layer.description).toContain('between 2026-01-01T00:00:00Z and now');
});
