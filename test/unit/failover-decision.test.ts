// The automatic failover's decision (src/watch/failover-decision.ts) on a controllable clock: the
// primary is lost only after lostAfter without an answer AND with every reachable standby off its
// WAL stream; a watcher cut off alone never declares; after a failover the cluster is held off.
import { describe, expect, it } from 'vitest';
import { decide, eligibleStandbys, holdOff, initialDecision, releaseHoldOff, type DecisionInput, type DecisionState, type StandbyObservation, type Verdict } from '../../src/watch/failover-decision.js';

const config = { lostAfterMs: 5000, maxLagBytes: 16 * 1024 * 1024 };
const t0 = Date.parse('2026-11-28T03:00:00Z');

function standby(name: string, fields: Partial<StandbyObservation> = {}): StandbyObservation {
  return { name, reachable: true, inRecovery: true, streaming: true, timeline: 1, receivedLsn: '0/3000000', ...fields };
}

function round(at: number, fields: Partial<DecisionInput> = {}): DecisionInput {
  return { now: t0 + at, primary: 'p1', primaryReachable: true, primaryLastLsn: '0/3000000', standbys: [standby('s1'), standby('s2')], ...fields };
}

/** Feeds the rounds in order; returns every verdict and the last state. */
function run(rounds: readonly DecisionInput[], start: DecisionState = initialDecision()): { verdicts: Verdict[]; state: DecisionState } {
  let state = start;
  const verdicts: Verdict[] = [];
  for (const input of rounds) {
    const next = decide(state, input, config);
    state = next.state;
    verdicts.push(next.verdict);
  }
  return { verdicts, state };
}

/** One round a second from `from` (ms) to `to` (inclusive), all with the same fields. */
function everySecond(from: number, to: number, fields: Partial<DecisionInput>): DecisionInput[] {
  const out: DecisionInput[] = [];
  for (let at = from; at <= to; at += 1000) out.push(round(at, fields));
  return out;
}

const down = { primaryReachable: false, primaryLastLsn: null } as const;
const streamsLost = [standby('s1', { streaming: false }), standby('s2', { streaming: false })];

describe('decide', () => {
  it('is healthy while the primary answers, and remembers its last position', () => {
    const { verdicts, state } = run([round(0), round(1000, { primaryLastLsn: '0/4000000' })]);
    expect(verdicts.map((verdict) => verdict.state)).toEqual(['healthy', 'healthy']);
    expect(state).toMatchObject({ primary: 'p1', lastReachedAt: t0 + 1000, primaryLastLsn: '0/4000000', unreachableSince: null });
  });

  it('declares the primary lost once it has been unreachable for lostAfter and every reachable standby lost its stream', () => {
    const { verdicts } = run([round(0, { primaryLastLsn: '0/3000100' }), ...everySecond(1000, 6000, { ...down, standbys: streamsLost })]);
    // Unreachable since 1 s: suspect until 6 s (5 s of lostAfter), then lost.
    expect(verdicts.slice(1, 6).map((verdict) => verdict.state)).toEqual(['suspect', 'suspect', 'suspect', 'suspect', 'suspect']);
    const last = verdicts[6];
    expect(last).toMatchObject({ state: 'lost', code: 'declared', since: t0 + 1000, lastPrimaryLsn: '0/3000100', eligible: ['s1', 's2'], heldOff: null });
    expect(last?.reasons.join('\n')).toContain('has not reached p1 for 5.0 s');
    expect(last?.reasons.join('\n')).toContain('every standby that answers (s1, s2) lost its WAL stream');
  });

  it('reports suspect with the time it started while waiting', () => {
    const { verdicts } = run([round(0), round(1000, { ...down, standbys: streamsLost }), round(3000, { ...down, standbys: streamsLost })]);
    expect(verdicts[2]).toMatchObject({ state: 'suspect', code: 'waiting', since: t0 + 1000 });
  });

  it('never declares when the watcher alone is cut off: the standbys still stream from the primary', () => {
    const { verdicts } = run([round(0), ...everySecond(1000, 60_000, down)]);
    expect(verdicts.some((verdict) => verdict.state === 'lost')).toBe(false);
    const last = verdicts[verdicts.length - 1];
    expect(last).toMatchObject({ state: 'suspect', code: 'cut-off', since: t0 + 1000 });
    expect(last?.reasons.join('\n')).toContain('s1, s2 still stream WAL from it');
    expect(last?.reasons.join('\n')).toContain('only the watcher is cut off');
    // Before lostAfter it is only waiting.
    expect(verdicts[2]).toMatchObject({ state: 'suspect', code: 'waiting' });
  });

  it('never declares while one reachable standby still streams', () => {
    const { verdicts } = run(everySecond(0, 20_000, { ...down, standbys: [standby('s1', { streaming: false }), standby('s2')] }));
    expect(verdicts.every((verdict) => verdict.state === 'suspect' && verdict.reasons.join(' ').includes('s2 still streams'))).toBe(true);
  });

  it('never declares when no standby answers (the watcher may be the one cut off)', () => {
    const unreachable = [standby('s1', { reachable: false, streaming: false }), standby('s2', { reachable: false, streaming: false })];
    const { verdicts } = run(everySecond(0, 20_000, { ...down, standbys: unreachable }));
    expect(verdicts.every((verdict) => verdict.state === 'suspect' && verdict.code === 'no-standby')).toBe(true);
  });

  it('declares with the standbys that answer when another does not', () => {
    const standbys = [standby('s1', { streaming: false }), standby('s2', { reachable: false, streaming: false, receivedLsn: null, timeline: null })];
    const { verdicts } = run([round(0), ...everySecond(1000, 6000, { ...down, standbys })]);
    expect(verdicts[6]).toMatchObject({ state: 'lost', code: 'declared', eligible: ['s1'] });
  });

  it('never declares when a reachable standby accepts writes already', () => {
    const standbys = [standby('s1', { streaming: false, inRecovery: false, timeline: 2 }), standby('s2', { streaming: false })];
    const { verdicts } = run(everySecond(0, 20_000, { ...down, standbys }));
    expect(verdicts.every((verdict) => verdict.state === 'suspect' && verdict.code === 'other-primary')).toBe(true);
  });

  it('needs the streams lost on two rounds in a row: a stream that drops only at the last moment is confirmed first', () => {
    const streaming = everySecond(0, 5000, down);
    const { verdicts } = run([...streaming, round(6000, { ...down, standbys: streamsLost }), round(7000, { ...down, standbys: streamsLost })]);
    expect(verdicts[5]).toMatchObject({ state: 'suspect', code: 'cut-off' });
    expect(verdicts[6]).toMatchObject({ state: 'suspect', code: 'confirming' });
    expect(verdicts[7]).toMatchObject({ state: 'lost', code: 'declared' });
  });

  it('starts again when the primary answers in between', () => {
    const { verdicts } = run([...everySecond(0, 4000, { ...down, standbys: streamsLost }), round(4500), ...everySecond(5000, 9000, { ...down, standbys: streamsLost })]);
    expect(verdicts.some((verdict) => verdict.state === 'lost')).toBe(false);
    expect(verdicts[verdicts.length - 1]).toMatchObject({ state: 'suspect', since: t0 + 5000 });
  });

  it('starts again for another primary (after a switchover), keeping the hold-off', () => {
    const held = holdOff(run([round(0)]).state, t0, 60_000, 'failover done');
    const { state } = run([round(1000, { primary: 's1', ...down, standbys: streamsLost })], held);
    expect(state).toMatchObject({ primary: 's1', unreachableSince: t0 + 1000, primaryLastLsn: null });
    expect(state.holdOff).toMatchObject({ until: t0 + 60_000 });
  });

  it('reports "no candidate" when every standby lags beyond the limit', () => {
    const standbys = [standby('s1', { streaming: false, receivedLsn: '0/1000000' }), standby('s2', { streaming: false, receivedLsn: '0/1000000' })];
    const { verdicts } = run([round(0, { primaryLastLsn: '0/9000000' }), ...everySecond(1000, 6000, { ...down, standbys })]);
    const last = verdicts[6];
    expect(last).toMatchObject({ state: 'lost', code: 'no-candidate', eligible: [] });
    expect(last?.reasons.join('\n')).toContain(`s1 lags 134217728 bytes`);
  });

  it('holds off a second failover until released, or until the hold-off expires', () => {
    const lostRounds = (from: number): DecisionInput[] => [round(from), ...everySecond(from + 1000, from + 6000, { ...down, standbys: streamsLost })];
    const held = holdOff(initialDecision(), t0, 30_000, 'automatic failover to s1 done');
    const during = run(lostRounds(0), held);
    expect(during.verdicts[6]).toMatchObject({ state: 'lost', code: 'declared', heldOff: { since: t0, until: t0 + 30_000 } });
    expect(during.verdicts[6]?.reasons.join('\n')).toContain('acknowledge the failover alert');
    // Released by a human.
    const released = run(lostRounds(0), releaseHoldOff(held));
    expect(released.verdicts[6]).toMatchObject({ state: 'lost', heldOff: null });
    // Expired.
    const later = run(lostRounds(40_000), held);
    expect(later.verdicts[6]).toMatchObject({ state: 'lost', heldOff: null });
    expect(later.state.holdOff).toBeNull();
  });
});

describe('eligibleStandbys', () => {
  it('keeps the reachable standbys on the newest timeline within the lag limit', () => {
    const result = eligibleStandbys([
      standby('s1', { timeline: 2, receivedLsn: '0/5000000' }),
      standby('s2', { timeline: 1, receivedLsn: '0/5000000' }),
      standby('s3', { timeline: 2, receivedLsn: '0/100' }),
      standby('s4', { reachable: false, timeline: 2 }),
      standby('s5', { timeline: 2, receivedLsn: null }),
    ], '0/5000000', 1024 * 1024);
    expect(result.eligible).toEqual(['s1']);
    expect(result.refused).toEqual([
      's2 is on timeline 1, older than 2',
      `s3 lags ${0x5000000 - 0x100} bytes behind the primary's last known position (limit 1048576)`,
      's5 never received WAL',
    ]);
  });

  it('takes a standby ahead of the last known position as not lagging, and any lag when the position is unknown', () => {
    expect(eligibleStandbys([standby('s1', { receivedLsn: '0/6000000' })], '0/5000000', 0).eligible).toEqual(['s1']);
    expect(eligibleStandbys([standby('s1', { receivedLsn: '0/1' })], null, 0).eligible).toEqual(['s1']);
  });
});
