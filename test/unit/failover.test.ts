// The pure decisions of a failover (DESIGN §7 rules 9 and 10): which standby may be promoted
// (chooseCandidate), which of two writable primaries is fenced (fenceTarget), and the deposed
// record a later process reads.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chooseCandidate, clearDeposed, deposedNodes, failoverStateDir, recordDeposed, standingPosition, type NodeStanding } from '../../src/cluster/failover.js';
import { fenceTarget, explainFence } from '../../src/cluster/fence.js';
import { defaultFailover } from '../../src/config/failover.js';
import type { ClusterConfig } from '../../src/config/types.js';

const MB = 1024 * 1024;

function standby(name: string, receivedLsn: string | null, overrides: Partial<NodeStanding> = {}): NodeStanding {
  return { name, reachable: true, inRecovery: true, timeline: 1, receivedLsn, replayedLsn: receivedLsn, streaming: false, ...overrides };
}

const down: NodeStanding = { name: 'p1', reachable: false, inRecovery: null, timeline: null, receivedLsn: null, replayedLsn: null, streaming: false };

describe('chooseCandidate', () => {
  it('promotes the most advanced standby by received WAL', () => {
    const choice = chooseCandidate([standby('s1', '0/3000000'), standby('s2', '0/3000100')], { maxLagBytes: 16 * MB });
    expect(choice.chosen?.name).toBe('s2');
    expect(choice.candidates.find((c) => c.name === 's1')?.lagBytes).toBe(0x100);
    expect(choice.candidates.find((c) => c.name === 's2')?.lagBytes).toBe(0);
    expect(choice.reference).toContain('s2');
  });

  it('compares received, not replayed, WAL (promotion replays what was received)', () => {
    const choice = chooseCandidate([
      standby('s1', '0/5000000', { replayedLsn: '0/1000000' }),
      standby('s2', '0/4000000', { replayedLsn: '0/4000000' }),
    ], { maxLagBytes: 64 * MB });
    expect(choice.chosen?.name).toBe('s1');
  });

  it('uses the replayed position of a standby that has not streamed since it started', () => {
    const choice = chooseCandidate([standby('s1', '0/2000000'), standby('s2', null, { replayedLsn: '0/3000000' })], { maxLagBytes: 64 * MB });
    expect(choice.chosen?.name).toBe('s2');
    expect(standingPosition(standby('s3', null, { replayedLsn: '0/10' }))).toBe(16);
  });

  it('breaks ties by config order', () => {
    expect(chooseCandidate([standby('s2', '0/3000000'), standby('s1', '0/3000000')], { maxLagBytes: MB }).chosen?.name).toBe('s2');
    expect(chooseCandidate([standby('s1', '0/3000000'), standby('s2', '0/3000000')], { maxLagBytes: MB }).chosen?.name).toBe('s1');
  });

  it('never promotes a standby on an older timeline, even the most advanced one', () => {
    const choice = chooseCandidate([standby('s1', '0/9000000', { timeline: 1 }), standby('s2', '0/3000000', { timeline: 2 })], { maxLagBytes: 1024 * MB });
    expect(choice.chosen?.name).toBe('s2');
    const refused = choice.candidates.find((c) => c.name === 's1');
    expect(refused?.eligible).toBe(false);
    expect(refused?.reason).toMatch(/timeline 1, older than timeline 2/);
    expect(choice.refusals).toEqual([expect.stringMatching(/^s1: on timeline 1/)]);
  });

  it('refuses every standby further behind the primary\'s last known position than maxLagBytes', () => {
    const choice = chooseCandidate([standby('s1', '0/1000000'), standby('s2', '0/1800000')], { maxLagBytes: 16 * MB, lastPrimaryLsn: '0/3000000' });
    expect(choice.chosen).toBeUndefined();
    expect(choice.candidates.map((c) => c.lagBytes)).toEqual([32 * MB, 24 * MB]);
    expect(choice.refusals).toHaveLength(2);
    expect(choice.refusals[1]).toMatch(/^s2: 24\.0 MB behind the primary's last known position 0\/3000000, beyond the limit of 16\.0 MB/);
  });

  it('accepts a standby exactly at the limit and measures against the primary when its position is known', () => {
    const choice = chooseCandidate([standby('s1', '0/2000000')], { maxLagBytes: 16 * MB, lastPrimaryLsn: '0/3000000' });
    expect(choice.chosen?.name).toBe('s1');
    expect(choice.chosen?.lagBytes).toBe(16 * MB);
    expect(choice.reference).toContain('0/3000000');
  });

  it('without the primary\'s position, measures lag against the most advanced standby', () => {
    const choice = chooseCandidate([standby('s1', '0/9000000'), standby('s2', '0/1000000')], { maxLagBytes: 16 * MB, to: 's2' });
    expect(choice.chosen).toBeUndefined();
    expect(choice.refusals).toEqual([expect.stringMatching(/^s2: 128 MB behind the most advanced standby, s1, beyond the limit/)]);
  });

  it('lets `to` force a qualifying standby that is not the most advanced', () => {
    const choice = chooseCandidate([standby('s1', '0/3000100'), standby('s2', '0/3000000')], { maxLagBytes: 16 * MB, to: 's2' });
    expect(choice.chosen?.name).toBe('s2');
  });

  it('refuses a forced node that is unknown, down, a primary or on an old timeline', () => {
    const nodes = [down, standby('s1', '0/3000000', { timeline: 2 }), standby('s2', '0/3000000', { timeline: 1 }), standby('p2', '0/3000000', { inRecovery: false })];
    expect(chooseCandidate(nodes, { maxLagBytes: MB, to: 'nope' }).refusals[0]).toMatch(/^nope: no such node/);
    expect(chooseCandidate(nodes, { maxLagBytes: MB, to: 'p1' }).refusals).toEqual(['p1: not reachable']);
    expect(chooseCandidate(nodes, { maxLagBytes: MB, to: 'p2' }).refusals[0]).toMatch(/not a standby/);
    expect(chooseCandidate(nodes, { maxLagBytes: MB, to: 's2' }).refusals[0]).toMatch(/older than timeline 2/);
    expect(chooseCandidate(nodes, { maxLagBytes: MB, to: 's2' }).chosen).toBeUndefined();
    expect(chooseCandidate(nodes, { maxLagBytes: MB }).chosen?.name).toBe('s1');
  });

  it('never promotes an unreachable node, a primary, or a standby without WAL', () => {
    const choice = chooseCandidate([down, standby('x', '0/5000000', { inRecovery: false }), standby('s1', null, { replayedLsn: null })], { maxLagBytes: MB });
    expect(choice.chosen).toBeUndefined();
    expect(choice.refusals).toEqual(['p1: not reachable', 'x: a primary (not in recovery), not a standby', 's1: it has received no WAL']);
  });

  it('says so when there is no node at all', () => {
    expect(chooseCandidate([], { maxLagBytes: MB }).refusals).toEqual(['no standby is configured']);
  });
});

describe('fenceTarget', () => {
  it('fences the primary on the older timeline and keeps the newer one', () => {
    expect(fenceTarget({ primaries: [{ name: 'p1', timeline: 1 }, { name: 's1', timeline: 2 }] })).toMatchObject({ node: 'p1', keep: 's1' });
    expect(fenceTarget({ primaries: [{ name: 's1', timeline: 3 }, { name: 'p1', timeline: 2 }] })).toMatchObject({ node: 'p1', keep: 's1' });
  });

  it('fences none when the timelines are equal or unknown: a human decides', () => {
    expect(fenceTarget({ primaries: [{ name: 'p1', timeline: 2 }, { name: 's1', timeline: 2 }] })).toBeUndefined();
    expect(explainFence({ primaries: [{ name: 'p1', timeline: 2 }, { name: 's1', timeline: 2 }] }).reason).toMatch(/same timeline 2: .*a human decides/);
    expect(fenceTarget({ primaries: [{ name: 'p1', timeline: null }, { name: 's1', timeline: 2 }] })).toBeUndefined();
  });

  it('never fences the only primary', () => {
    expect(fenceTarget({ primaries: [{ name: 'p1', timeline: 1 }] })).toBeUndefined();
    expect(fenceTarget({ primaries: [] })).toBeUndefined();
  });

  it('names the deposed record when it agrees, and fences none when it contradicts the timelines', () => {
    const at = '2026-11-28T03:00:00.000Z';
    const agrees = fenceTarget({ primaries: [{ name: 'p1', timeline: 1 }, { name: 's1', timeline: 2 }], deposed: [{ node: 'p1', newPrimary: 's1', timeline: 2, at }] });
    expect(agrees?.node).toBe('p1');
    expect(agrees?.reason).toMatch(/recorded as deposed/);
    expect(fenceTarget({ primaries: [{ name: 'p1', timeline: 1 }, { name: 's1', timeline: 2 }], deposed: [{ node: 's1', newPrimary: 'p1', timeline: 2, at }] })).toBeUndefined();
  });

  it('with three primaries, fences the oldest first', () => {
    expect(fenceTarget({ primaries: [{ name: 'a', timeline: 2 }, { name: 'b', timeline: 1 }, { name: 'c', timeline: 3 }] })).toMatchObject({ node: 'b', keep: 'c' });
  });
});

describe('deposed records', () => {
  let stateDir: string;
  const cluster: ClusterConfig = { name: 'main/east', nodes: [], pgbouncer: undefined, failover: defaultFailover };

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'pgwarden-deposed-'));
  });
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it('records, replaces, lists and clears deposed primaries in the state directory', async () => {
    expect(await deposedNodes(cluster, stateDir)).toEqual([]);
    await recordDeposed(cluster, 'p1', 's1', 2, stateDir);
    await recordDeposed(cluster, { name: 'p1' }, { name: 's2' }, 3, stateDir);
    const records = await deposedNodes(cluster, stateDir);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ node: 'p1', newPrimary: 's2', timeline: 3 });
    const file = join(failoverStateDir(stateDir), 'main%2Feast.json');
    expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({ version: 1, cluster: 'main/east' });
    // A failover back to p1 drops the record that named p1 as deposed.
    await recordDeposed(cluster, 's2', 'p1', 4, stateDir);
    expect((await deposedNodes(cluster, stateDir)).map((r) => r.node)).toEqual(['s2']);
    await clearDeposed(cluster, 's2', stateDir);
    expect(await deposedNodes(cluster, stateDir)).toEqual([]);
  });
});
