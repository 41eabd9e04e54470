// The live topology (issue 6 item 1) on real servers: a primary, a standby streaming from it on a
// slot, and a standby cascading from that standby. The console's topology monitor probes every
// node on connections of its own; the tree it publishes is primary > standby > cascade with
// timelines and lag, and the Replication view draws it. Then the standby is promoted while the
// primary keeps running: two writable primaries, reported as split brain by the tree and by the
// watcher's cluster-wide finding.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTopologyMonitor, type TopologyDesk } from '../../src/app/topology-monitor.js';
import { splitBrainFinding } from '../../src/checks/replication.js';
import type { TopologyNode, TopologyView } from '../../src/cluster/topology.js';
import { parseConfig } from '../../src/config/load.js';
import { probeIds } from '../../src/probes/index.js';
import { replicationProbe } from '../../src/probes/replication.js';
import { serverProbe } from '../../src/probes/server.js';
import { replicationScreen } from '../../src/screens/Replication.js';
import { renderScreen, resultsIn, screenProps } from '../fixtures/snapshots.js';
import { createPrimary, createStandby, destroyAll, freePort, waitFor, type TestCluster } from '../support/cluster.js';
import { closeNodes, probeResult } from '../support/probe.js';

let primary: TestCluster;
let standby: TestCluster;
let cascade: TestCluster;
let desk: TopologyDesk | undefined;
let latest: TopologyView | undefined;

beforeAll(async () => {
  primary = await createPrimary({ name: 'topo-primary' });
  standby = await createStandby(primary, { name: 'topo-standby', slot: 'topo_standby' });
  // pg_basebackup from the standby: its primary_conninfo names the standby, a cascade. It needs a
  // slot of its own there: the copied settings name the standby's slot, which exists on the primary only.
  cascade = await createStandby(standby, { name: 'topo-cascade', slot: 'topo_cascade' });
  const config = parseConfig({
    refresh_ms: 500,
    clusters: [{
      name: 'main',
      nodes: [
        { name: 'db1', dsn: primary.dsn() },
        { name: 'db2', dsn: standby.dsn() },
        { name: 'db3', dsn: cascade.dsn() },
      ],
    }],
  }, 'topology.test.json', probeIds);
  desk = createTopologyMonitor({ config, cluster: 'main' });
  desk.subscribe((view) => {
    latest = view;
  });
}, 120_000);

afterAll(async () => {
  await desk?.close();
  await closeNodes();
  await destroyAll();
});

function nodeOf(view: TopologyView, name: string): TopologyNode | undefined {
  return view.topology.nodes.find((node) => node.name === name);
}

/** The tree as "name" indented by depth. */
function shape(view: TopologyView): string[] {
  return view.topology.lines.map((line) => `${'  '.repeat(line.depth)}${line.node.name}`);
}

describe('topology of a real primary, standby and cascade', () => {
  it('is primary > standby > cascade, with timelines, lag, sync state and slot', async () => {
    // WAL to ship, so that every stream has something to report.
    await primary.sql('create table topo_t as select g from generate_series(1, 20000) g');
    const view = await waitFor('the tree primary > standby > cascade, caught up', () => {
      const view = latest;
      if (view === undefined || shape(view).join('|') !== 'db1|  db2|    db3') return Promise.resolve(undefined);
      const lagged = ['db2', 'db3'].every((name) => nodeOf(view, name)?.lag?.bytes === 0);
      return Promise.resolve(lagged ? view : undefined);
    });
    expect(view.cluster).toBe('main');
    expect(view.topology.primaries).toEqual(['db1']);
    expect(view.topology.problems).toEqual([]);
    expect(nodeOf(view, 'db1')).toMatchObject({ role: 'primary', status: 'ok', timeline: 1, upstream: null });
    expect(nodeOf(view, 'db2')).toMatchObject({ role: 'standby', timeline: 1, upstream: 'db1', slot: 'topo_standby', syncState: 'async', state: 'streaming', lag: { bytes: 0, seconds: 0 } });
    expect(nodeOf(view, 'db3')).toMatchObject({ role: 'standby', timeline: 1, upstream: 'db2', slot: 'topo_cascade', syncState: 'async', state: 'streaming', lag: { bytes: 0, seconds: 0 } });
    // Only configured nodes: pgwarden's own sessions are no WAL senders.
    expect(view.topology.nodes.every((node) => node.configured)).toBe(true);

    // The Replication view, on the primary, draws that tree above the primary's own view.
    const result = await probeResult(replicationProbe, primary.dsn());
    const props = { ...screenProps('replication', { results: resultsIn('ok', { replication: result }), width: 120, height: 30 }), topology: view };
    const lines = renderScreen(replicationScreen, props).text;
    expect(lines[0]).toBe('topology of main: 3 nodes · primary db1');
    expect(lines[1]).toMatch(/^ node +role +tl +replay lag +lag time sync +state +slot$/);
    expect(lines[2]).toMatch(/^ db1 +primary +1$/);
    expect(lines[3]).toMatch(/^ └─ db2 +standby +1 +0 B +0ms async +streaming +topo_standby$/);
    expect(lines[4]).toMatch(/^ {4}└─ db3 +standby +1 +0 B +0ms async +streaming +topo_cascade$/);
    expect(lines.some((line) => line.startsWith('standbys (1)'))).toBe(true);
  });

  it('sees the cascade from the standby: its WAL senders are in its replication snapshot', async () => {
    const result = await probeResult(replicationProbe, standby.dsn());
    expect(result.status).toBe('ok');
    if (result.status !== 'ok' || result.snapshot.role !== 'standby') throw new Error('the standby is not a standby');
    expect(result.snapshot.standbys).toHaveLength(1);
    expect(result.snapshot.standbys?.[0]).toMatchObject({ client: '127.0.0.1', state: 'streaming', syncState: 'async' });
  });

  it('reports split brain once the standby is promoted while the primary still runs', async () => {
    await standby.promote();
    const view = await waitFor('two primaries in the tree', () => {
      const view = latest;
      return Promise.resolve(view !== undefined && view.topology.primaries.length === 2 && nodeOf(view, 'db2')?.timeline === 2 ? view : undefined);
    });
    expect(view.topology.primaries).toEqual(['db1', 'db2']);
    const [first] = view.topology.problems;
    expect(first).toMatchObject({ kind: 'split-brain', severity: 'critical', nodes: ['db1', 'db2'] });
    expect(first?.message).toContain('split brain: db1 (timeline 1) and db2 (timeline 2) both accept writes');
    expect(nodeOf(view, 'db1')).toMatchObject({ role: 'primary', timeline: 1 });
    expect(nodeOf(view, 'db2')).toMatchObject({ role: 'primary', timeline: 2, upstream: null, lag: null });

    // The cascade follows its upstream onto the new timeline and stays under it.
    const followed = await waitFor('the cascade to follow db2 onto timeline 2', () => {
      const view = latest;
      const db3 = view === undefined ? undefined : nodeOf(view, 'db3');
      return Promise.resolve(view !== undefined && db3?.timeline === 2 && db3.upstream === 'db2' && db3.state === 'streaming' ? view : undefined);
    });
    expect(shape(followed)).toEqual(['db1', 'db2', '  db3']);
    expect(followed.topology.problems.map((problem) => problem.kind)).toEqual(['split-brain']);

    // The Replication view puts the problem in red on its first line.
    const result = await probeResult(replicationProbe, primary.dsn());
    const props = { ...screenProps('replication', { results: resultsIn('ok', { replication: result }), width: 200, height: 30 }), topology: followed };
    expect(renderScreen(replicationScreen, props).text[0]).toMatch(/^split brain: db1 \(timeline 1\) and db2 \(timeline 2\) both accept writes/);

    // The watcher's cluster-wide finding from the real server probes of the three nodes.
    const servers = await Promise.all([primary, standby, cascade].map((cluster) => probeResult(serverProbe, cluster.dsn())));
    const found = splitBrainFinding(servers.map((server, index) => ({ node: `db${index + 1}`, server })));
    expect(found).toMatchObject({ checkId: 'split-brain', severity: 'critical', value: 2 });
    expect(found?.message).toBe('split brain: 2 nodes accept writes: db1 (timeline 1), db2 (timeline 2): db1 is on the oldest timeline, probably the former primary: stop writes there');
  });
});

describe('the console\'s topology monitor', () => {
  it('reports nodes it cannot reach, follows the console to a cluster of one node (no tree) and closes its connections', async () => {
    // Two free ports nobody listens on: connections are refused at once.
    const closedPorts = [await freePort(), await freePort()];
    const config = parseConfig({
      refresh_ms: 250,
      clusters: [
        { name: 'gone', nodes: closedPorts.map((port, index) => ({ name: `n${index + 1}`, dsn: `postgresql://postgres@127.0.0.1:${port}/postgres?connect_timeout=2` })) },
        { name: 'solo', nodes: [{ name: 'only', dsn: primary.dsn() }] },
      ],
    }, 'topology-monitor.test.json', probeIds);
    const monitor = createTopologyMonitor({ config, cluster: 'gone' });
    const views: (TopologyView | undefined)[] = [];
    monitor.subscribe((view) => views.push(view));
    try {
      expect(monitor.view()?.topology.nodes.map((node) => node.status)).toEqual(['pending', 'pending']);
      const failed = await waitFor('both nodes unreachable', () => {
        const view = monitor.view();
        return Promise.resolve(view?.topology.nodes.every((node) => node.status === 'unreachable') === true ? view : undefined);
      });
      expect(failed.cluster).toBe('gone');
      expect(failed.topology.problems.map((problem) => [problem.kind, problem.nodes])).toEqual([['no-primary', ['n1', 'n2']], ['unseen', ['n1']], ['unseen', ['n2']]]);
      expect(failed.topology.nodes[0]?.error).toMatch(/ECONNREFUSED|refused|connect/i);

      monitor.select('solo');
      expect(monitor.view()).toBeUndefined();
      expect(views.at(-1)).toBeUndefined();
    } finally {
      await monitor.close();
    }
  });
});
