import { describe, expect, it } from 'vitest';
import { splitBrainCheck, splitBrainFinding } from '../../src/checks/replication.js';
import { buildTopology, type NodeObservation, type Topology, type TopologyNode } from '../../src/cluster/topology.js';
import type { PrimaryReplication, ReplicationSlot, ReplicationSnapshot, Standby, StandbyReplication, WalReceiver } from '../../src/probes/replication.js';
import type { ServerSnapshot } from '../../src/probes/server.js';
import type { ProbeResult } from '../../src/probes/types.js';
import { errorResult, fixtureNow, okResult, primaryReplication, resultsIn, serverSnapshot, standbyReplication, standbyServerSnapshot } from '../fixtures/snapshots.js';

const MB = 1024 ** 2;

function sender(pid: number, application: string, fields: Partial<Standby> = {}): Standby {
  const base = primaryReplication.standbys[0];
  if (base === undefined) throw new Error('fixture without standby');
  return { ...base, pid, application, client: '10.0.0.2', lag: { bytes: 0, seconds: 0 }, replayBytes: 0, replayLagSeconds: 0, ...fields };
}

function activeSlot(name: string, pid: number): ReplicationSlot {
  const base = primaryReplication.slots[1];
  if (base === undefined) throw new Error('fixture without slot');
  return { ...base, name, active: true, activePid: pid };
}

function primary(standbys: readonly Standby[], slots: readonly ReplicationSlot[] = []): PrimaryReplication {
  return { ...primaryReplication, standbys, slots };
}

function receiver(host: string, port: number, fields: Partial<WalReceiver> = {}): WalReceiver {
  if (standbyReplication.receiver === null) throw new Error('fixture without receiver');
  return { ...standbyReplication.receiver, senderHost: host, senderPort: port, slotName: null, ...fields };
}

function standby(from: WalReceiver | null, standbys: readonly Standby[] = [], slots: readonly ReplicationSlot[] = []): StandbyReplication {
  return { ...standbyReplication, receiver: from, standbys, slots };
}

function server(role: 'primary' | 'standby', timeline: number, systemIdentifier = serverSnapshot.systemIdentifier): ProbeResult<ServerSnapshot> {
  return okResult({ ...(role === 'primary' ? serverSnapshot : standbyServerSnapshot), timeline, systemIdentifier });
}

function node(name: string, host: string, server: NodeObservation['server'], replication: NodeObservation['replication'], port = 5432): NodeObservation {
  return { name, host, port, server, replication };
}

function byKey(topology: Topology, key: string): TopologyNode {
  const found = topology.nodes.find((entry) => entry.key === key);
  if (found === undefined) throw new Error(`no node ${key} in ${topology.nodes.map((entry) => entry.key).join(', ')}`);
  return found;
}

/** The tree as "depth:name" strings, in the order drawn. */
function tree(topology: Topology): string[] {
  return topology.lines.map((line) => `${'  '.repeat(line.depth)}${line.node.name}`);
}

describe('buildTopology', () => {
  it('puts the primary at the root, its standby under it and a cascade under the standby, with lag, sync state and slot', () => {
    const topology = buildTopology([
      node('db1', '10.0.0.1', server('primary', 3), okResult(primary([sender(501, 'db2', { syncState: 'sync', lag: { bytes: 2 * MB, seconds: 1.5 } })], [activeSlot('db2_slot', 501)]))),
      node('db2', '10.0.0.2', server('standby', 3), okResult(standby(receiver('10.0.0.1', 5432, { slotName: 'db2_slot' }), [sender(601, 'walreceiver', { lag: { bytes: 0, seconds: 0 } })]))),
      node('db3', '10.0.0.3', server('standby', 3), okResult(standby(receiver('10.0.0.2', 5432)))),
    ]);
    expect(tree(topology)).toEqual(['db1', '  db2', '    db3']);
    expect(topology.primaries).toEqual(['db1']);
    expect(topology.problems).toEqual([]);
    expect(byKey(topology, 'db1')).toMatchObject({ role: 'primary', timeline: 3, upstream: null, lag: null, state: null });
    expect(byKey(topology, 'db2')).toMatchObject({ role: 'standby', timeline: 3, upstream: 'db1', lag: { bytes: 2 * MB, seconds: 1.5 }, syncState: 'sync', slot: 'db2_slot', state: 'streaming' });
    // db3 names db2 as its upstream and db2 has one WAL sender left: paired by elimination.
    expect(byKey(topology, 'db3')).toMatchObject({ role: 'standby', upstream: 'db2', lag: { bytes: 0, seconds: 0 }, syncState: 'async', slot: null });
    expect(topology.lines.map((line) => [line.depth, line.last, line.pipes])).toEqual([[0, true, []], [1, true, []], [2, true, [false]]]);
  });

  it('ties standbys to their upstream by slot or application_name when the receivers name a host the config spells otherwise', () => {
    const topology = buildTopology([
      node('db1', 'db1.example.com', server('primary', 1), okResult(primary([sender(501, 'db2'), sender(502, 'walreceiver'), sender(503, 'pg_receivewal')], [activeSlot('db3_slot', 502)]))),
      node('db2', 'db2.example.com', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432)))),
      node('db3', 'db3.example.com', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432, { slotName: 'db3_slot' })))),
    ]);
    expect(tree(topology)).toEqual(['db1', '  db2', '  db3', '  pg_receivewal']);
    expect(byKey(topology, 'db2')).toMatchObject({ upstream: 'db1', upstreamAddress: null, state: 'streaming' });
    expect(byKey(topology, 'db3')).toMatchObject({ upstream: 'db1', slot: 'db3_slot' });
    // A WAL client outside the config is listed under its upstream, not as a problem.
    expect(byKey(topology, 'db1/pid 503')).toMatchObject({ configured: false, status: 'outside', role: 'unknown', upstream: 'db1' });
    expect(topology.problems).toEqual([]);
    expect(topology.lines.map((line) => line.last)).toEqual([true, false, false, true]);
  });

  it('tells apart slots of the same name on two upstreams', () => {
    const topology = buildTopology([
      node('db1', '10.0.0.1', server('primary', 1), okResult(primary([sender(501, 'walreceiver')], [activeSlot('replica', 501)]))),
      node('db2', '10.0.0.2', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432, { slotName: 'replica' }), [sender(601, 'walreceiver', { syncState: 'potential' })], [activeSlot('replica', 601)]))),
      node('db3', '10.0.0.3', server('standby', 1), okResult(standby(receiver('10.0.0.2', 5432, { slotName: 'replica' })))),
    ]);
    expect(tree(topology)).toEqual(['db1', '  db2', '    db3']);
    expect(byKey(topology, 'db3')).toMatchObject({ upstream: 'db2', syncState: 'potential', slot: 'replica' });
  });

  it('matches loopback spellings: a receiver on 127.0.0.1 streams from the node configured as localhost', () => {
    const topology = buildTopology([
      node('a', 'localhost', server('primary', 1), okResult(primary([sender(1, 'walreceiver')])), 6001),
      node('b', '127.0.0.1', server('standby', 1), okResult(standby(receiver('127.0.0.1', 6001))), 6002),
    ]);
    expect(byKey(topology, 'b')).toMatchObject({ upstream: 'a', lag: { bytes: 0, seconds: 0 } });
    expect(tree(topology)).toEqual(['a', '  b']);
  });

  it('reports two writable primaries as split brain, critical, naming both timelines', () => {
    const topology = buildTopology([
      node('db1', '10.0.0.1', server('primary', 1), okResult(primary([]))),
      node('db2', '10.0.0.2', server('primary', 2), okResult(primary([]))),
    ]);
    expect(topology.primaries).toEqual(['db1', 'db2']);
    expect(tree(topology)).toEqual(['db1', 'db2']);
    expect(topology.problems).toEqual([{
      kind: 'split-brain', severity: 'critical', nodes: ['db1', 'db2'],
      message: 'split brain: db1 (timeline 1) and db2 (timeline 2) both accept writes; stop writes on the one that must not be primary (the older timeline is usually the old primary), then rejoin it as a standby',
    }]);
  });

  it('reports a standby left on an older timeline after a promotion, and one not connected to any upstream', () => {
    const topology = buildTopology([
      node('db2', '10.0.0.2', server('primary', 2), okResult(primary([]))),
      node('db1', '10.0.0.1', server('standby', 1), okResult(standby(receiver('10.0.0.9', 5432, { status: 'waiting' })))),
      node('db3', '10.0.0.3', server('standby', 2), okResult(standby(null))),
    ]);
    expect(topology.problems.map((problem) => [problem.kind, problem.severity, problem.nodes])).toEqual([
      ['old-timeline', 'critical', ['db1']],
      ['disconnected', 'critical', ['db1']],
      ['disconnected', 'critical', ['db3']],
    ]);
    expect(topology.problems[0]?.message).toBe("db1 is on timeline 1, older than the primary db2's 2: it did not follow the promotion; never promote it, rejoin it (pg_rewind or a fresh clone)");
    expect(topology.problems[2]?.message).toBe('db3 is a standby connected to no upstream (no WAL receiver runs): it falls behind; check primary_conninfo and its server log');
    expect(tree(topology)).toEqual(['db2', 'db1', 'db3']);
  });

  it('reports a node of another database system', () => {
    const topology = buildTopology([
      node('db1', '10.0.0.1', server('primary', 1), okResult(primary([sender(9, 'db2')]))),
      node('db2', '10.0.0.2', server('standby', 1, '7000000000000000001'), okResult(standby(receiver('10.0.0.1', 5432)))),
    ]);
    expect(topology.problems).toHaveLength(1);
    expect(topology.problems[0]).toMatchObject({ kind: 'system-identifier', severity: 'critical', nodes: ['db2'] });
    expect(topology.problems[0]?.message).toContain('system identifier 7000000000000000001, the primary db1 has 7301234567890123456');
  });

  it('lists an unknown standby under the primary, warns of a standby streaming from outside the config and of a node nobody sees', () => {
    const topology = buildTopology([
      node('db1', '10.0.0.1', server('primary', 1), okResult(primary([sender(77, 'reporting', { client: '10.0.0.77', lag: { bytes: 5 * MB, seconds: 3 } })]))),
      node('db2', '10.0.0.2', server('standby', 1), okResult(standby(receiver('10.0.0.99', 5433)))),
      node('db4', '10.0.0.4', errorResult<ServerSnapshot>(undefined, 'connection refused'), errorResult<ReplicationSnapshot>(undefined, 'connection refused')),
    ]);
    expect(tree(topology)).toEqual(['db1', '  reporting', 'db2', 'db4']);
    expect(byKey(topology, 'db1/pid 77')).toMatchObject({ name: 'reporting', configured: false, role: 'standby', lag: { bytes: 5 * MB, seconds: 3 } });
    expect(byKey(topology, 'db2')).toMatchObject({ upstream: null, upstreamAddress: '10.0.0.99:5433', state: 'streaming' });
    expect(byKey(topology, 'db4')).toMatchObject({ status: 'unreachable', role: 'unknown', error: 'connection refused' });
    expect(topology.problems).toEqual([
      { kind: 'unknown-upstream', severity: 'warning', nodes: ['db2'], message: "db2 streams from 10.0.0.99:5433, which is no node of this cluster's config: add it, or fix primary_conninfo" },
      { kind: 'unseen', severity: 'warning', nodes: ['db4'], message: 'db4 is seen by nobody: pgwarden cannot reach it (connection refused) and no node lists it as a standby' },
    ]);
  });

  it('keeps a node pgwarden cannot reach under the upstream that still streams to it, without a problem', () => {
    const topology = buildTopology([
      node('db1', '10.0.0.1', server('primary', 1), okResult(primary([sender(5, 'db2', { lag: { bytes: MB, seconds: 0.5 } })]))),
      node('db2', '10.0.0.2', errorResult<ServerSnapshot>(undefined, 'password authentication failed'), errorResult<ReplicationSnapshot>(undefined, 'password authentication failed')),
    ]);
    expect(tree(topology)).toEqual(['db1', '  db2']);
    expect(byKey(topology, 'db2')).toMatchObject({ status: 'unreachable', role: 'standby', upstream: 'db1', lag: { bytes: MB, seconds: 0.5 }, state: 'streaming' });
    expect(topology.problems).toEqual([]);
  });

  it('says there is no primary once every node has answered or failed, and nothing while one is pending', () => {
    const standbys = [
      node('db1', '10.0.0.1', errorResult<ServerSnapshot>(undefined, 'connection refused'), errorResult<ReplicationSnapshot>(undefined, 'connection refused')),
      node('db2', '10.0.0.2', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432, { status: 'waiting' })))),
    ];
    const settled = buildTopology(standbys);
    expect(settled.problems.map((problem) => problem.kind)).toEqual(['no-primary', 'disconnected', 'unseen']);
    expect(settled.problems[0]?.message).toBe('no primary: 1 of 2 nodes answer and none accepts writes');
    // db2's receiver still names db1 (it waits to reconnect): drawn under it, but nobody sees db1.
    expect(tree(settled)).toEqual(['db1', '  db2']);
    const [, waiting] = standbys;
    if (waiting === undefined) throw new Error('no second node');
    const pending = buildTopology([node('db1', '10.0.0.1', undefined, undefined), waiting]);
    expect(pending.problems.map((problem) => problem.kind)).toEqual(['disconnected']);
    expect(byKey(pending, 'db1')).toMatchObject({ status: 'pending', role: 'unknown' });
  });

  it('does not double the rows of standbys it cannot tell apart, and cuts a replication cycle', () => {
    const ambiguous = buildTopology([
      node('p', '10.0.0.1', server('primary', 1), okResult(primary([sender(1, 'walreceiver'), sender(2, 'walreceiver')]))),
      node('s1', '10.0.0.2', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432)))),
      node('s2', '10.0.0.3', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432)))),
    ]);
    expect(tree(ambiguous)).toEqual(['p', '  s1', '  s2']);
    expect(ambiguous.nodes.find((entry) => entry.key === 's1')).toMatchObject({ upstream: 'p', lag: null, state: 'streaming' });
    const cycle = buildTopology([
      node('a', '10.0.0.1', server('standby', 1), okResult(standby(receiver('10.0.0.2', 5432)))),
      node('b', '10.0.0.2', server('standby', 1), okResult(standby(receiver('10.0.0.1', 5432)))),
    ]);
    expect(tree(cycle)).toEqual(['a', '  b']);
  });
});

describe('splitBrainFinding (the watcher\'s cluster-wide split-brain check)', () => {
  const entry = (nodeName: string, result: NodeObservation['server']): { node: string; server: NodeObservation['server'] } => ({ node: nodeName, server: result });

  it('is critical when two reachable nodes accept writes, naming the one on the older timeline', () => {
    const found = splitBrainFinding([entry('db1', server('primary', 1)), entry('db2', server('primary', 2)), entry('db3', server('standby', 2))]);
    expect(found).toMatchObject({ checkId: 'split-brain', severity: 'critical', subject: 'primaries', value: 2, unit: 'count', runbook: 'docs/alerts.md#split-brain' });
    expect(found?.message).toBe('split brain: 2 nodes accept writes: db1 (timeline 1), db2 (timeline 2): db1 is on the oldest timeline, probably the former primary: stop writes there');
    expect(found?.context.details).toEqual({ db1: `primary on timeline 1, system ${serverSnapshot.systemIdentifier}`, db2: `primary on timeline 2, system ${serverSnapshot.systemIdentifier}` });
  });

  it('is ok with one primary (so a split brain resolves), and says nothing for one node or while a node is pending', () => {
    expect(splitBrainFinding([entry('db1', server('primary', 2)), entry('db2', server('standby', 2))])).toMatchObject({ severity: 'ok', value: 1, message: 'one writable primary: db1' });
    // An unreachable node is not known to accept writes, even if it was a primary when last seen.
    expect(splitBrainFinding([entry('db1', server('primary', 2)), entry('db2', errorResult<ServerSnapshot>(serverSnapshot))])).toMatchObject({ severity: 'ok', value: 1 });
    expect(splitBrainFinding([entry('db1', server('primary', 1))])).toBeUndefined();
    expect(splitBrainFinding([entry('db1', server('primary', 1)), entry('db2', { status: 'pending' })])).toBeUndefined();
    expect(splitBrainFinding([entry('db1', server('primary', 1)), entry('db2', undefined)])).toBeUndefined();
  });

  it('as a check, has nothing to say per node but that the server probe it reads does not answer', () => {
    const evaluate = (results: ReturnType<typeof resultsIn>): ReturnType<typeof splitBrainCheck.evaluate> => splitBrainCheck.evaluate({ results, thresholds: {}, now: fixtureNow });
    expect(evaluate(resultsIn('ok'))).toEqual([]);
    expect(evaluate(resultsIn('error')).map((found) => [found.severity, found.message])).toEqual([['unknown', 'cannot evaluate: the server probe failed: connection lost: server closed the connection unexpectedly']]);
    expect(splitBrainCheck.runbook.steps.length).toBeGreaterThanOrEqual(4);
  });
});
