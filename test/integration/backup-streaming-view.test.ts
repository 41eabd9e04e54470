// The streaming line of the Backups view (docs/console-backups.md) from real data: a throwaway
// cluster, a real WalReceiver (pg_receivewal on its slot), the real replication probe run against
// the server, and the backup monitor's view of a config that enables streaming. Before the receiver
// starts the slot does not exist; while it streams the line says "receiving … slot <name>"; once it
// is stopped and its walsender is gone, the line says NOT CONNECTED and names the inactive slot.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupMonitor, RECEIVER_APPLICATION, streamingPlanOf, type BackupDesk, type BackupsView } from '../../src/app/backup-monitor.js';
import { LocalRepository } from '../../src/backup/repository/local.js';
import { WalReceiver } from '../../src/backup/wal/receive.js';
import type { BackupsConfig, ClusterBackupSettings } from '../../src/config/backups.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { replicationProbe, type PrimaryReplication, type ReplicationSnapshot } from '../../src/probes/replication.js';
import type { Results } from '../../src/probes/runner.js';
import type { ProbeResult, Stamped } from '../../src/probes/types.js';
import { backupsScreen, streamingLines } from '../../src/screens/Backups.js';
import type { Part } from '../../src/screens/common.js';
import { renderScreen, screenProps } from '../fixtures/snapshots.js';
import { PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { probeResult } from '../support/probe.js';

const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const CLUSTER = 'Stream View';
const SLOT = 'pgwarden_stream_view';
const scratch = new PostgresScratch('streaming-view');
let primary: TestCluster;
let receiver: WalReceiver | undefined;
let desk: BackupDesk | undefined;
let view: Extract<BackupsView, { kind: 'configured' }>;
/** The probe's previous snapshot, as the runner passes it (it dates a slot's inactivity before 17). */
let previous: Stamped<ReplicationSnapshot> | undefined;

const text = (parts: readonly Part[]): string => parts.map((part) => part.text).join('');

interface Seen {
  readonly results: Results;
  readonly snapshot: PrimaryReplication;
  /** The streaming lines of the view's plan against this probe run. */
  readonly shown: Part[][];
}

/** Runs the replication probe once against the cluster, as the console's runner does, and computes the streaming lines. */
async function look(): Promise<Seen> {
  const result: ProbeResult<ReplicationSnapshot> = await probeResult(replicationProbe, primary.dsn(), previous === undefined ? {} : { previous });
  if (result.status !== 'ok') throw new Error(`replication probe: ${JSON.stringify(result)}`);
  if (result.snapshot.role !== 'primary') throw new Error('the test cluster is a primary');
  previous = { snapshot: result.snapshot, at: result.at };
  const results: Results = new Map([['replication', result]]);
  return { results, snapshot: result.snapshot, shown: streamingLines(results, streamingPlanOf(view), new Date()) };
}

beforeAll(async () => {
  primary = await createPrimary({ name: 'streaming-view' });
  await primary.sql('create table t (id int, note text)');
  const repoDir = await scratch.dir('repo');
  const settings: ClusterBackupSettings = { repositories: undefined, compression: undefined, schedule: {}, retention: {}, drill: {}, marginMinutes: undefined, streaming: { enabled: true } };
  const backups: BackupsConfig = { repositories: [{ name: 'local', spec: { type: 'local', path: repoDir } }], keys: [], clusters: { [CLUSTER]: settings } };
  desk = createBackupMonitor({ config: { backups }, cluster: CLUSTER });
  const made = desk.view();
  if (made.kind !== 'configured') throw new Error('the config covers the cluster');
  view = made;
  receiver = new WalReceiver({
    connection: resolveConnection(primary.dsn(), 'the test cluster'),
    cluster: CLUSTER,
    spoolDir: join(await scratch.dir('spool'), 'spool'),
    repositories: [new LocalRepository(repoDir)],
    compression: 'gzip',
    pgBin: PG_BIN,
    statusIntervalS: 1,
    slotCheckMs: 500,
  });
});

afterAll(async () => {
  await receiver?.stop();
  await desk?.close();
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('the Backups view\'s streaming line from a real server', () => {
  it('the monitor exposes the plan\'s streaming settings, and before the receiver runs its slot does not exist', async () => {
    expect(view.streaming).toEqual({ enabled: true, slot: SLOT });
    const { shown } = await look();
    expect(shown.map(text)).toEqual([
      `streaming: NOT CONNECTED · slot ${SLOT} does not exist`,
      expect.stringMatching(/^ {2}check: is `pgwarden --watch` running with streaming for this cluster\? .*\(docs\/wal-streaming\.md\)$/),
    ]);
    expect(shown[0]?.[0]?.tone).toBe('critical');
  });

  it('while pg_receivewal streams: receiving, its flush lag and reply age, on its slot', async () => {
    await receiver!.start();
    // Once pg_receivewal reached START_REPLICATION: streaming, holding the slot, and it has answered.
    const { results, snapshot, shown } = await waitFor('the line to say receiving on the slot', async () => {
      await primary.sql('insert into t select g, md5(g::text) from generate_series(1, 100) g');
      const seen = await look();
      const line = seen.shown[0];
      return line !== undefined && /^streaming: receiving \(streaming\) · flush lag .* · reply .* ago · slot pgwarden_stream_view$/.test(text(line)) ? seen : undefined;
    });
    const sender = snapshot.standbys.find((standby) => standby.application === RECEIVER_APPLICATION);
    expect(sender?.pid).toBe(snapshot.slots.find((slot) => slot.name === SLOT)?.activePid);
    expect(shown).toHaveLength(1);
    expect(shown[0]?.[0]).toEqual({ text: 'streaming: receiving (streaming)', tone: 'ok' });
    // A local, quiet server: far under the lag levels, so the figures carry no warning.
    expect(sender?.flushBytes).not.toBeNull();
    expect(sender!.flushBytes!).toBeLessThan(100 * 1024 ** 2);
    expect(shown[0]?.[1]?.tone).toBeUndefined();

    // The screen shows it under the archive line.
    const rendered = renderScreen(backupsScreen, { ...screenProps('backups', { results, width: 200, height: 30 }), backups: desk!.view(), now: new Date() }).text;
    expect(rendered[1]).toMatch(/^archive: /);
    expect(rendered[2]).toBe(text(shown[0]!));
  });

  it('once the receiver stops and its walsender is gone: NOT CONNECTED, naming the inactive slot and the WAL it keeps', async () => {
    await receiver!.stop();
    const { snapshot, shown } = await waitFor('the walsender to be gone and the slot released', async () => {
      const seen = await look();
      const gone = !seen.snapshot.standbys.some((standby) => standby.application === RECEIVER_APPLICATION);
      return gone && seen.snapshot.slots.some((slot) => slot.name === SLOT && !slot.active) ? seen : undefined;
    });
    const slot = snapshot.slots.find((candidate) => candidate.name === SLOT);
    expect(slot?.retainedBytes).not.toBeNull();
    expect(shown.map(text)).toEqual([
      expect.stringMatching(new RegExp(`^streaming: NOT CONNECTED · slot ${SLOT} inactive( for \\S+)?, retaining \\d[\\d.]* (B|kB|MB) of WAL on the server \\(wal_status reserved\\)$`)),
      expect.stringMatching(/^ {2}check: is `pgwarden --watch` running\? Its log says why pg_receivewal stopped; .*\(cap it with max_slot_wal_keep_size, docs\/wal-streaming\.md\)$/),
    ]);
    expect(shown[0]?.[0]).toEqual({ text: 'streaming: NOT CONNECTED', tone: 'critical' });

    // Before 17 the probe dates the inactivity from its first sight and carries it to later runs,
    // so the line can say for how long.
    const again = await look();
    const carried = again.snapshot.slots.find((candidate) => candidate.name === SLOT)?.inactiveSince;
    expect(carried).toEqual(slot?.inactiveSince);
    const later = streamingLines(again.results, streamingPlanOf(view), new Date(carried!.getTime() + 90_000));
    expect(text(later[0]!)).toMatch(new RegExp(`^streaming: NOT CONNECTED · slot ${SLOT} inactive for 1m30s, retaining `));
  });
});
