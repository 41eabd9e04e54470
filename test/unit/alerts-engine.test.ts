import { describe, expect, it } from 'vitest';
import { acknowledge, defaultEngineConfig, silence, stepEngine, testNotices, unsilence } from '../../src/alerts/engine.js';
import { alertKey } from '../../src/alerts/state.js';
import type { EngineConfig, EngineState, Evaluation, Notice } from '../../src/alerts/types.js';
import { Clock, evaluation, finding, hour, minute, second, team } from '../support/alerts-clock.js';

const start = Date.parse('2026-03-02T10:00:00Z');
const config = defaultEngineConfig([team()]);
const idle = alertKey('prod', 'db1', 'idle_in_transaction', 'pid 42');

/** Two failing evaluations one minute apart: the alert fires at 60 s. */
function fire(clock: Clock, at = 0, severity: 'warning' | 'critical' = 'warning', subject = 'pid 42'): void {
  clock.step(at, [evaluation([finding(severity, subject)])]);
  clock.step(at + minute, [evaluation([finding(severity, subject)])]);
}

describe('grouping and timing', () => {
  it('waits 30 s before the first notice of a group', () => {
    const clock = new Clock(config, start);
    fire(clock);
    expect(clock.ticks(70 * second, 89 * second, second)).toEqual([]);
    const [notice, ...rest] = clock.step(90 * second);
    expect(rest).toEqual([]);
    expect(notice).toMatchObject({ kind: 'firing', severity: 'warning', team: 'dba', channel: 'email', recipients: ['dba@example.com'], subject: '[WARNING] prod: idle_in_transaction', suppressedCount: 0 });
    expect(notice?.id).toBe(`${notice?.threadId}.1`);
    expect(notice?.alerts[0]).toMatchObject({ key: idle, status: 'firing', value: 400, threshold: 300, firstSeen: start, context: { pid: 42, query: 'update accounts set …' } });
    expect(notice?.body).toContain('  value 400 s (threshold 300 s)');
    expect(notice?.body).toContain('  runbook: docs/alerts.md#idle_in_transaction');
    expect(notice?.body).toContain(`  first seen ${new Date(start).toISOString()}`);
  });

  it('sends updates no more often than the group interval, in the same thread', () => {
    const clock = new Clock(config, start);
    fire(clock);
    const first = clock.step(90 * second)[0];
    // A second subject of the same check joins the group and fires at 3 min.
    clock.step(2 * minute, [evaluation([finding('warning'), finding('warning', 'pid 43')])]);
    clock.step(3 * minute, [evaluation([finding('warning'), finding('warning', 'pid 43')])]);
    expect(clock.ticks(3 * minute, 90 * second + 5 * minute - second, second)).toEqual([]);
    const [update] = clock.step(90 * second + 5 * minute);
    expect(update).toMatchObject({ kind: 'update', threadId: first?.threadId, subject: '[WARNING] prod: idle_in_transaction (2 alerts)' });
    expect(update?.id).toBe(`${first?.threadId}.2`);
    expect(update?.alerts.map((alert) => alert.subject)).toEqual(['pid 42', 'pid 43']);
  });

  it('repeats every 4 h while firing, and sends the resolved notice in the same thread', () => {
    const clock = new Clock(config, start);
    fire(clock);
    const first = clock.step(90 * second)[0];
    expect(clock.ticks(91 * second, 90 * second + 4 * hour - second, 10 * minute)).toEqual([]);
    const [repeat] = clock.step(90 * second + 4 * hour);
    expect(repeat?.body[0]).toBe('Still firing (repeat).');
    expect(repeat?.threadId).toBe(first?.threadId);
    const t = 90 * second + 4 * hour + minute;
    clock.step(t, [evaluation([finding('ok')])]);
    // Resolved waits for the group interval after the repeat.
    expect(clock.ticks(t, 90 * second + 4 * hour + 5 * minute - second, 10 * second)).toEqual([]);
    const [resolved] = clock.step(90 * second + 4 * hour + 5 * minute);
    expect(resolved).toMatchObject({ kind: 'resolved', severity: 'ok', subject: '[RESOLVED] prod: idle_in_transaction', threadId: first?.threadId });
    expect(resolved?.alerts[0]?.status).toBe('resolved');
    expect(clock.ticks(90 * second + 4 * hour + 6 * minute, 10 * hour, hour)).toEqual([]);
    expect(clock.state.groups).toEqual({});
  });

  it('sends escalation and de-escalation as updates, and a new thread for a new incident', () => {
    const clock = new Clock({ ...config, timing: { groupWaitMs: 0, groupIntervalMs: 0, repeatIntervalMs: 4 * hour } }, start);
    fire(clock);
    clock.step(2 * minute, [evaluation([finding('critical')])]);
    clock.step(3 * minute, [evaluation([finding('warning')])]);
    clock.step(4 * minute, [evaluation([finding('ok')])]);
    expect(clock.notices.map((notice) => `${notice.kind}:${notice.severity}`)).toEqual(['firing:warning', 'update:critical', 'update:warning', 'resolved:ok']);
    expect(new Set(clock.notices.map((notice) => notice.threadId)).size).toBe(1);
    fire(clock, 50 * minute);
    expect(clock.notices.at(-1)?.kind).toBe('firing');
    expect(clock.notices.at(-1)?.threadId).not.toBe(clock.notices[0]?.threadId);
  });

  it('says UNKNOWN in its own words', () => {
    const clock = new Clock(config, start);
    clock.step(0, [evaluation([finding('unknown', 'disk', 'disk', null)])]);
    clock.step(minute, [evaluation([finding('unknown', 'disk', 'disk', null)])]);
    const [notice] = clock.step(minute + 30 * second);
    expect(notice).toMatchObject({ severity: 'unknown', subject: '[UNKNOWN] prod: disk' });
  });

  it('reports a flapping alert once, holds it, then reports the settled state', () => {
    const fast = { ...config, timing: { groupWaitMs: 0, groupIntervalMs: 0, repeatIntervalMs: 4 * hour } };
    const clock = new Clock(fast, start);
    const pattern = ['warning', 'warning', 'ok', 'warning', 'warning', 'ok', 'warning', 'warning', 'ok', 'warning', 'warning'] as const;
    pattern.forEach((severity, index) => clock.step(index * minute, [evaluation([finding(severity)])]));
    const statuses = clock.notices.map((notice) => `${notice.kind}:${notice.alerts[0]?.status ?? ''}`);
    expect(statuses).toEqual(['firing:firing', 'resolved:resolved', 'firing:firing', 'update:flapping']);
    expect(clock.notices.at(-1)?.body[0]).toContain('flapping: notices held until stable');
    // Still firing, no change for 30 minutes: one update with the real state.
    const held = clock.ticks(11 * minute, 10 * minute + 30 * minute - second, minute);
    expect(held).toEqual([]);
    const [settled] = clock.step(40 * minute);
    expect(settled).toMatchObject({ kind: 'update' });
    expect(settled?.alerts[0]?.status).toBe('firing');
  });

  it('produces the same notice ids from the same inputs, also after a JSON round trip of the state', () => {
    const script = (clock: Clock, roundTrip: boolean): Notice[] => {
      fire(clock);
      clock.step(90 * second);
      if (roundTrip) clock.state = JSON.parse(JSON.stringify(clock.state)) as EngineState;
      clock.step(3 * minute, [evaluation([finding('critical')])]);
      clock.step(90 * second + 5 * minute);
      clock.step(7 * minute, [evaluation([finding('ok')])]);
      clock.step(90 * second + 10 * minute);
      return clock.notices;
    };
    const a = script(new Clock(config, start), false);
    const b = script(new Clock(config, start), true);
    expect(a.map((notice) => notice.id)).toEqual(b.map((notice) => notice.id));
    expect(a.map((notice) => `${notice.kind}:${notice.severity}`)).toEqual(['firing:warning', 'update:critical', 'resolved:ok']);
    expect(new Set(a.map((notice) => notice.id)).size).toBe(3);
    // A restarted watcher replaying the step that produced a notice, with the state saved after it, sends nothing.
    const clock = new Clock(config, start);
    fire(clock);
    clock.step(90 * second);
    expect(clock.step(90 * second)).toEqual([]);
  });

  it('a watcher that crashed before saving its state produces the same notice again, with the same id', () => {
    const clock = new Clock(config, start);
    fire(clock);
    const saved = JSON.stringify(clock.state);
    const [sent] = clock.step(90 * second);
    const restarted = stepEngine(JSON.parse(saved) as EngineState, [], config, new Date(start + 90 * second));
    expect(sent).toBeDefined();
    expect(restarted.notices.map((notice) => notice.id)).toEqual([sent?.id]);
    expect(restarted.notices[0]?.body).toEqual(sent?.body);
  });
});

describe('inhibition', () => {
  it('instance down mutes every other alert of that node, not of other nodes', () => {
    const clock = new Clock(config, start);
    const down = (): Evaluation[] => [
      evaluation([finding('critical', 'db1', 'connectivity'), finding('warning')], 'db1'),
      evaluation([finding('warning')], 'db2'),
    ];
    clock.step(0, down());
    clock.step(minute, down());
    const notices = clock.step(90 * second);
    expect(notices.map((notice) => `${notice.subject} ${notice.alerts.map((alert) => alert.node).join()}`).sort()).toEqual([
      '[CRITICAL] prod: connectivity db1',
      '[WARNING] prod: idle_in_transaction db2',
    ]);
  });

  it('a critical mutes the warning of the same check and subject', () => {
    const clock = new Clock(config, start);
    const evals = [evaluation([finding('critical', 'slot s1', 'replication_slots')], 'db1'), evaluation([finding('warning', 'slot s1', 'replication_slots')], 'db2')];
    clock.step(0, evals);
    clock.step(minute, evals);
    const [notice, ...rest] = clock.step(90 * second);
    expect(rest).toEqual([]);
    expect(notice?.alerts.map((alert) => `${alert.node}:${alert.severity}`)).toEqual(['db1:critical']);
  });
});

describe('silences and acknowledgements', () => {
  it('a silence holds notices until it expires, then it is removed', () => {
    const clock = new Clock(config, start);
    clock.state = silence(clock.state, { id: 's1', cluster: 'prod', subject: 'pid *', startsAt: start, endsAt: start + 10 * minute, author: 'ann', comment: 'maintenance' }, new Date(start));
    fire(clock);
    expect(clock.ticks(minute, 10 * minute - second, 10 * second)).toEqual([]);
    expect(clock.state.silences).toHaveLength(1);
    clock.step(10 * minute);
    expect(clock.state.silences).toEqual([]);
    expect(clock.ticks(10 * minute + 10 * second, 10 * minute + 20 * second)).toEqual([]);
    expect(clock.step(10 * minute + 30 * second).map((notice) => notice.kind)).toEqual(['firing']);
  });

  it('a silence on another subject or cluster does not match; removing one takes effect', () => {
    const clock = new Clock(config, start);
    clock.state = silence(clock.state, { id: 'other', cluster: 'staging', startsAt: start, endsAt: start + hour, author: 'ann', comment: '' }, new Date(start));
    clock.state = silence(clock.state, { id: 'mine', checkId: 'idle_*', startsAt: start, endsAt: start + hour, author: 'ann', comment: '' }, new Date(start));
    fire(clock);
    expect(clock.step(90 * second)).toEqual([]);
    clock.state = unsilence(clock.state, 'mine');
    // The group wait counts from the moment there is something to say.
    expect(clock.step(2 * minute)).toEqual([]);
    expect(clock.step(2 * minute + 30 * second).map((notice) => notice.kind)).toEqual(['firing']);
  });

  it('an acknowledged alert does not repeat and still resolves', () => {
    const clock = new Clock(config, start);
    fire(clock);
    clock.step(90 * second);
    clock.state = acknowledge(clock.state, idle, 'ann', 'on it', new Date(start + 2 * minute));
    expect(clock.ticks(2 * minute, 9 * hour, 30 * minute)).toEqual([]);
    const [resolved] = clock.step(9 * hour + minute, [evaluation([finding('ok')])]);
    expect(resolved?.kind).toBe('resolved');
  });
});

describe('rate limits and cooldown', () => {
  it('holds notices over the channel limit and reports how many were suppressed', () => {
    const limited: EngineConfig = { ...config, rateLimits: { email: { limit: 1, windowMs: hour } } };
    const clock = new Clock(limited, start);
    const both = [evaluation([finding('warning')], 'db1', 'prod'), evaluation([finding('warning')], 'db1', 'staging')];
    clock.step(0, both);
    clock.step(minute, both);
    const first = clock.step(90 * second);
    expect(first.map((notice) => notice.subject)).toEqual(['[WARNING] prod: idle_in_transaction']);
    // The staging notice waits for a token; it is counted once, not once per step.
    expect(clock.ticks(100 * second, 90 * second + hour - minute, minute)).toEqual([]);
    expect(clock.state.channels['email']?.suppressed).toBe(1);
    const [late] = clock.step(90 * second + hour);
    expect(late).toMatchObject({ subject: '[WARNING] staging: idle_in_transaction', suppressedCount: 1 });
    expect(late?.body[0]).toBe('1 notice suppressed');
    expect(clock.state.channels['email']?.suppressed).toBe(0);
  });

  it('cooldown holds a new firing of a recently notified alert and counts it', () => {
    const fast: EngineConfig = { ...config, cooldownMs: 30 * minute, timing: { groupWaitMs: 0, groupIntervalMs: 0, repeatIntervalMs: 4 * hour } };
    const clock = new Clock(fast, start);
    fire(clock);
    clock.step(2 * minute, [evaluation([finding('ok')])]);
    expect(clock.notices.map((notice) => notice.kind)).toEqual(['firing', 'resolved']);
    fire(clock, 5 * minute);
    // The last notice about it was the resolved one at 2 min: nothing until 32 min.
    expect(clock.ticks(6 * minute, 32 * minute - second, 10 * second)).toEqual([]);
    const [again] = clock.step(32 * minute);
    expect(again).toMatchObject({ kind: 'firing', suppressedCount: 1 });
    expect(again?.body[0]).toBe('1 notice suppressed');
  });

  it('an escalation to critical goes through the cooldown', () => {
    const fast: EngineConfig = { ...config, cooldownMs: 30 * minute, timing: { groupWaitMs: 0, groupIntervalMs: 0, repeatIntervalMs: 4 * hour } };
    const clock = new Clock(fast, start);
    fire(clock);
    expect(clock.step(2 * minute, [evaluation([finding('critical')])]).map((notice) => notice.severity)).toEqual(['critical']);
  });
});

describe('test notices', () => {
  it('one per team and channel, with deterministic ids', () => {
    const teams = [team({ channels: ['email', 'webhook'] })];
    const a = testNotices(teams, new Date(start));
    expect(a.map((notice) => `${notice.kind}:${notice.channel}`)).toEqual(['test:email', 'test:webhook']);
    expect(testNotices(teams, new Date(start)).map((notice) => notice.id)).toEqual(a.map((notice) => notice.id));
  });

  it('a step with no evaluations and no state produces nothing', () => {
    const result = stepEngine({ alerts: {}, silences: [], groups: {}, channels: {}, digests: {} }, [], config, new Date(start));
    expect(result.notices).toEqual([]);
    expect(result.events).toEqual([]);
  });
});
