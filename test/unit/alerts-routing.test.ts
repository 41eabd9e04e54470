import { describe, expect, it } from 'vitest';
import { acknowledge, defaultEngineConfig } from '../../src/alerts/engine.js';
import { globMatch } from '../../src/alerts/glob.js';
import { inQuietHours, localMinutes, routeAlert } from '../../src/alerts/routing.js';
import { alertKey } from '../../src/alerts/state.js';
import type { QuietHours } from '../../src/alerts/types.js';
import { Clock, evaluation, finding, hour, minute, second, team } from '../support/alerts-clock.js';

const paris: QuietHours = { from: '22:00', to: '07:00', timeZone: 'Europe/Paris', criticalOverrides: true };

describe('quiet hours', () => {
  it('reads the local time of the zone across the DST change', () => {
    // Europe/Paris moves from UTC+1 to UTC+2 on 2026-03-29 at 01:00 UTC.
    expect(localMinutes(new Date('2026-03-28T21:30:00Z'), 'Europe/Paris')).toBe(22 * 60 + 30);
    expect(localMinutes(new Date('2026-03-29T05:30:00Z'), 'Europe/Paris')).toBe(7 * 60 + 30);
    expect(localMinutes(new Date('2026-07-01T12:00:00Z'), 'America/New_York')).toBe(8 * 60);
  });

  it('wraps midnight and follows the zone', () => {
    expect(inQuietHours(paris, new Date('2026-03-28T20:59:00Z'))).toBe(false); // 21:59 CET
    expect(inQuietHours(paris, new Date('2026-03-28T21:00:00Z'))).toBe(true); // 22:00 CET
    expect(inQuietHours(paris, new Date('2026-03-29T04:30:00Z'))).toBe(true); // 06:30 CEST
    expect(inQuietHours(paris, new Date('2026-03-29T05:30:00Z'))).toBe(false); // 07:30 CEST (06:30 if DST were ignored)
    expect(inQuietHours({ ...paris, from: '09:00', to: '17:00' }, new Date('2026-03-30T10:00:00Z'))).toBe(true);
    expect(inQuietHours({ ...paris, from: '09:00', to: '17:00' }, new Date('2026-03-30T16:00:00Z'))).toBe(false);
  });

  it('holds a warning until quiet hours end, then sends the state at that time', () => {
    // 22:30 CET on the night of the DST change; quiet hours end at 07:00 CEST = 05:00 UTC.
    const start = Date.parse('2026-03-28T21:30:00Z');
    const clock = new Clock(defaultEngineConfig([team({ quietHours: paris })]), start);
    clock.step(0, [evaluation([finding('warning')])]);
    clock.step(minute, [evaluation([finding('warning')])]);
    const end = Date.parse('2026-03-29T05:00:00Z') - start;
    expect(clock.ticks(2 * minute, end - minute, 10 * minute)).toEqual([]);
    const [notice] = clock.step(end);
    expect(notice).toMatchObject({ kind: 'firing', severity: 'warning' });
  });

  it('lets a critical through when the team allows it, and not otherwise', () => {
    const start = Date.parse('2026-01-15T23:00:00Z'); // midnight in Paris
    const overriding = team({ id: 'oncall', quietHours: paris });
    const sleeping = team({ id: 'dev', members: ['dev@example.com'], quietHours: { ...paris, criticalOverrides: false } });
    const clock = new Clock(defaultEngineConfig([overriding, sleeping]), start);
    clock.step(0, [evaluation([finding('critical')])]);
    clock.step(minute, [evaluation([finding('critical')])]);
    const notices = clock.step(minute + 30 * second);
    expect(notices.map((notice) => `${notice.team}:${notice.severity}`)).toEqual(['oncall:critical']);
  });
});

describe('team filters', () => {
  it('routes by minimum severity, check and cluster globs', () => {
    const teams = [
      team({ id: 'all' }),
      team({ id: 'crit', minSeverity: 'critical' }),
      team({ id: 'repl', checks: ['replication_*'] }),
      team({ id: 'staging', clusters: ['staging-*'] }),
    ];
    const clock = new Clock(defaultEngineConfig(teams), Date.parse('2026-03-02T10:00:00Z'));
    clock.step(0, [evaluation([finding('warning')])]);
    clock.step(minute, [evaluation([finding('warning')])]);
    const record = clock.state.alerts[alertKey('prod', 'db1', 'idle_in_transaction', 'pid 42')];
    expect(record).toBeDefined();
    if (record === undefined) return;
    expect([...routeAlert(teams, record, new Date())].map(([id]) => id)).toEqual(['all']);
    expect([...routeAlert(teams, { ...record, checkId: 'replication_lag', severity: 'critical' }, new Date())].map(([id]) => id)).toEqual(['all', 'crit', 'repl']);
    expect(globMatch('staging-*', 'staging-eu')).toBe(true);
    expect(globMatch('staging-*', 'prod')).toBe(false);
    expect(globMatch('a.b', 'axb')).toBe(false);
  });

  it('keeps a de-escalated alert with a critical-only team as an update, not a resolution', () => {
    const teams = [team({ id: 'crit', minSeverity: 'critical', timing: { groupWaitMs: 0, groupIntervalMs: 0 } })];
    const clock = new Clock(defaultEngineConfig(teams), Date.parse('2026-03-02T10:00:00Z'));
    clock.step(0, [evaluation([finding('critical')])]);
    clock.step(minute, [evaluation([finding('critical')])]);
    clock.step(2 * minute, [evaluation([finding('warning')])]);
    clock.step(3 * minute, [evaluation([finding('ok')])]);
    expect(clock.notices.map((notice) => `${notice.kind}:${notice.severity}`)).toEqual(['firing:critical', 'update:warning', 'resolved:ok']);
  });
});

describe('digest delivery', () => {
  it('sends one digest per period with what changed, nothing in between', () => {
    const start = Date.parse('2026-03-02T10:05:00Z');
    const digest = team({ id: 'weekly', delivery: { mode: 'digest', everyMs: hour } });
    const clock = new Clock(defaultEngineConfig([digest]), start);
    clock.step(0, [evaluation([finding('warning')])]);
    clock.step(minute, [evaluation([finding('warning')])]);
    clock.step(10 * minute, [evaluation([finding('ok')])]);
    clock.step(20 * minute, [evaluation([finding('warning', 'pid 7')])]);
    clock.step(21 * minute, [evaluation([finding('warning', 'pid 7')])]);
    expect(clock.ticks(22 * minute, 55 * minute - second, minute)).toEqual([]);
    const [notice, ...rest] = clock.step(55 * minute); // 11:00
    expect(rest).toEqual([]);
    expect(notice).toMatchObject({ kind: 'digest', team: 'weekly', severity: 'warning' });
    expect(notice?.alerts.map((alert) => `${alert.subject}:${alert.status}`)).toEqual(['pid 42:firing', 'pid 42:resolved', 'pid 7:firing']);
    expect(notice?.id).toBe(`${notice?.threadId}.${Date.parse('2026-03-02T11:00:00Z').toString(36)}`);
    // An hour without changes: no digest.
    expect(clock.ticks(56 * minute, 2 * hour + 10 * minute, 5 * minute)).toEqual([]);
  });
});

describe('escalation', () => {
  const start = Date.parse('2026-03-02T10:00:00Z');
  const teams = [
    team({ id: 'oncall', escalation: { toTeam: 'leads', afterMs: 15 * minute } }),
    team({ id: 'leads', members: ['lead@example.com'], minSeverity: 'critical', clusters: ['nothing-*'] }),
  ];

  it('sends an unacknowledged critical to the second team after the delay', () => {
    const clock = new Clock(defaultEngineConfig(teams), start);
    clock.step(0, [evaluation([finding('critical')])]);
    clock.step(minute, [evaluation([finding('critical')])]);
    const escalated = clock.ticks(2 * minute, 30 * minute, 10 * second).filter((notice) => notice.team === 'leads');
    expect(escalated).toHaveLength(1);
    expect(clock.notices.find((notice) => notice.team === 'leads')?.at).toBe(16 * minute + 30 * second);
    expect(escalated[0]?.recipients).toEqual(['lead@example.com']);
    expect(escalated[0]?.body).toContain('  escalated: not acknowledged by team oncall');
    // The second team also hears the resolution.
    clock.step(40 * minute, [evaluation([finding('ok')])]);
    expect(clock.notices.filter((notice) => notice.team === 'leads').map((notice) => notice.kind)).toEqual(['firing', 'resolved']);
  });

  it('does not escalate a critical acknowledged in time', () => {
    const clock = new Clock(defaultEngineConfig(teams), start);
    clock.step(0, [evaluation([finding('critical')])]);
    clock.step(minute, [evaluation([finding('critical')])]);
    clock.state = acknowledge(clock.state, alertKey('prod', 'db1', 'idle_in_transaction', 'pid 42'), 'ann', 'mine', new Date(start + 10 * minute));
    clock.ticks(2 * minute, hour, 30 * second);
    expect(clock.notices.map((notice) => notice.team)).toEqual(['oncall']);
  });
});
