import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgNode } from '../../src/db/node.js';
import { replicationProbe, type PrimaryReplication, type Standby, type StandbyReplication } from '../../src/probes/replication.js';
import { createPrimary, createStandby, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { closeNodes, nodeFor, probeOnce } from '../support/probe.js';

const SLOT = 'repl_test_standby';
let primary: TestCluster;
let standby: TestCluster;
let primaryNode: PgNode;
let standbyNode: PgNode;

beforeAll(async () => {
  // One pair for the whole file; archive_command 'false' gives a real failing archiver without
  // disturbing streaming (the slot and the unarchived segments keep all WAL).
  primary = await createPrimary({ name: 'repl-probe', archiveCommand: 'false' });
  standby = await createStandby(primary, { name: 'repl-probe-standby', slot: SLOT });
  await primary.sql('create role repl_watcher login; grant pg_monitor to repl_watcher; create role repl_plain login');
  primaryNode = nodeFor(primary.dsn());
  standbyNode = nodeFor(standby.dsn());
});

afterAll(async () => {
  await closeNodes();
  await destroyAll();
});

async function onPrimary(node: PgNode = primaryNode): Promise<PrimaryReplication> {
  const snapshot = await probeOnce(replicationProbe, '', { node });
  if (snapshot.role !== 'primary') throw new Error(`expected a primary, got ${snapshot.role}`);
  return snapshot;
}

async function onStandby(node: PgNode = standbyNode): Promise<StandbyReplication> {
  const snapshot = await probeOnce(replicationProbe, '', { node });
  if (snapshot.role !== 'standby') throw new Error(`expected a standby, got ${snapshot.role}`);
  return snapshot;
}

function streaming(snapshot: PrimaryReplication): Standby | undefined {
  return snapshot.standbys.find((s) => s.state === 'streaming');
}

async function caughtUp(): Promise<{ primary: PrimaryReplication; standby: StandbyReplication }> {
  return waitFor('the standby to replay everything', async () => {
    const p = await onPrimary();
    const s = await onStandby();
    const lag = streaming(p)?.lag;
    return lag?.bytes === 0 && lag.seconds === 0 && s.replay.gapBytes === 0 ? { primary: p, standby: s } : undefined;
  });
}

describe('replication probe', () => {
  it('sees the standby streaming through its active slot, 0 bytes and 0 s behind once idle', async () => {
    const { primary: p, standby: s } = await caughtUp();
    const sender = streaming(p);
    expect(sender).toMatchObject({ client: '127.0.0.1', syncState: 'async', sentBytes: 0, writeBytes: 0, flushBytes: 0, replayBytes: 0, replayLagSeconds: 0 });
    expect(sender?.replayLsn).toBe(p.currentLsn);
    const slot = p.slots.find((x) => x.name === SLOT);
    expect(slot).toMatchObject({ type: 'physical', active: true, activePid: sender?.pid, inactiveSince: null, walStatus: 'reserved' });
    expect(slot?.retainedBytes).toBeGreaterThanOrEqual(0);

    // The standby's own view of the same moment.
    expect(s.receiver).toMatchObject({ status: 'streaming', senderHost: '127.0.0.1', senderPort: primary.port, slotName: SLOT, receivedTimeline: 1 });
    expect(s.replay).toMatchObject({ gapBytes: 0, delaySeconds: 0, paused: false, pauseState: 'not paused' });
    expect(s.replay.receiveLsn).toBe(s.replay.replayLsn);
  });

  it('shows real replay lag on both sides while replay is paused, and 0 again after resume', async () => {
    // A replayed commit first, so the standby has a last-replay timestamp to measure the delay from.
    await primary.sql('create table repl_probe_before (id int); insert into repl_probe_before values (1)');
    await waitFor('the table on the standby', async () => (await standby.sql("select to_regclass('repl_probe_before') as t"))[0]?.['t'] !== null);

    await standby.sql('select pg_wal_replay_pause()');
    await primary.sql("create table repl_probe_lag as select g, repeat('x', 200) as pad from generate_series(1, 40000) g");

    const lagging = await waitFor('the primary to see received-but-unreplayed WAL', async () => {
      const sender = streaming(await onPrimary());
      return sender !== undefined && sender.flushBytes === 0 && (sender.replayBytes ?? 0) > 4_000_000 ? sender : undefined;
    });
    expect(lagging.lag.bytes).toBe(lagging.replayBytes);
    // Bytes are outstanding, so the server's replay_lag is kept (it goes stale while replay is paused), never forced to 0.
    expect(lagging.lag.seconds).not.toBe(0);

    const paused = await waitFor('the standby to report its pause', async () => {
      const s = await onStandby();
      return s.replay.pauseState === 'paused' ? s : undefined;
    });
    expect(paused.replay.paused).toBe(true);
    expect(paused.replay.gapBytes).toBeGreaterThan(4_000_000);
    expect(paused.replay.delaySeconds).toBeGreaterThan(0);
    expect(paused.replay.receiveLsn).not.toBe(paused.replay.replayLsn);

    await standby.sql('select pg_wal_replay_resume()');
    const { standby: resumed } = await caughtUp();
    expect(resumed.replay).toMatchObject({ paused: false, gapBytes: 0, delaySeconds: 0 });
  });

  it('lists the slots of the standby itself', async () => {
    await standby.sql("select pg_create_physical_replication_slot('repl_test_cascade', true)");
    const s = await onStandby();
    const slot = s.slots.find((x) => x.name === 'repl_test_cascade');
    expect(slot).toMatchObject({ type: 'physical', active: false, activePid: null });
    expect(slot?.restartLsn).not.toBeNull();
    expect(slot?.retainedBytes).toBeGreaterThanOrEqual(0);
    expect(slot?.inactiveSince).toBeInstanceOf(Date);
  });

  it('sees the archiver failing with segments waiting when archive_command fails', async () => {
    await primary.sql('create table repl_probe_archive (id int); insert into repl_probe_archive values (1); select pg_switch_wal()');
    const archiver = await waitFor('the archiver to report failures', async () => {
      const a = (await onPrimary()).archiver;
      return a.failing && a.failedCount > 0 && (a.waitingSegments ?? 0) >= 1 ? a : undefined;
    });
    expect(archiver).toMatchObject({ mode: 'on', archivedCount: 0, lastArchivedAt: null, waitingUnknownReason: null });
    expect(archiver.lastFailedWal).toMatch(/^[0-9A-F]{24}$/);
    expect(archiver.lastFailedAt).toBeInstanceOf(Date);
  });

  it('runs as a role that is only a member of pg_monitor, on both sides', async () => {
    await waitFor('the monitoring role on the standby', async () => (await standby.sql("select 1 from pg_roles where rolname = 'repl_watcher'")).length === 1);
    const p = await onPrimary(nodeFor(primary.dsn('postgres', 'repl_watcher')));
    const sender = streaming(p);
    expect(sender?.client).toBe('127.0.0.1');
    expect(sender?.replayLsn).not.toBeNull();
    expect(p.slots.find((x) => x.name === SLOT)?.active).toBe(true);
    // pg_ls_archive_statusdir() is granted to pg_monitor.
    expect(p.archiver.waitingSegments).toBeGreaterThanOrEqual(1);

    const s = await onStandby(nodeFor(standby.dsn('postgres', 'repl_watcher')));
    expect(s.receiver).toMatchObject({ status: 'streaming', senderHost: '127.0.0.1', senderPort: primary.port });

    // Without pg_monitor the query still runs: details are hidden and the .ready count says why.
    const plain = await onPrimary(nodeFor(primary.dsn('postgres', 'repl_plain')));
    expect(plain.standbys.length).toBeGreaterThan(0);
    expect(plain.standbys[0]).toMatchObject({ state: null, replayBytes: null, lag: { bytes: null, seconds: null } });
    expect(plain.archiver.waitingSegments).toBeNull();
    expect(plain.archiver.waitingUnknownReason).toMatch(/pg_monitor/);
  });

  it('sees the slot inactive and its retained WAL growing once the standby is down', async () => {
    await standby.stop();
    const first = await waitFor('the slot to go inactive', async () => {
      const p = await onPrimary();
      const slot = p.slots.find((x) => x.name === SLOT);
      return slot !== undefined && !slot.active && p.standbys.length === 0 ? slot : undefined;
    });
    expect(first.activePid).toBeNull();
    expect(first.inactiveSince).toBeInstanceOf(Date);
    expect(first.retainedBytes).not.toBeNull();

    await primary.sql("create table repl_probe_retained as select g, repeat('y', 200) as pad from generate_series(1, 5000) g");
    const later = (await onPrimary()).slots.find((x) => x.name === SLOT);
    expect(later?.active).toBe(false);
    expect(later?.restartLsn).toBe(first.restartLsn);
    expect(later?.retainedBytes).toBeGreaterThan((first.retainedBytes ?? 0) + 1_000_000);
  });
});
