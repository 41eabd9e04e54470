/**
 * `pgwarden --watch` reconciles WAL streaming with the config at each reload (SIGHUP;
 * src/watch/backup-jobs.ts): enabling it starts pg_receivewal, a new slot restarts it on that slot
 * (the old one stopped first), disabling it stops it; a receiver that could not start (its spool
 * directory cannot be created) is retried at the next reload, once the DBA fixed the cause. Each
 * change is one `wal_streaming` event and one log line. A real cluster and the real process.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { alertEvents, parseEvents, spawnWatch, stopWatch, type WatchProcess } from '../support/watch.js';

const scratch = new PostgresScratch('watch-streaming-reload');
let primary: TestCluster;
let configFile: string;
let repo: string;
let blocker: string;
let watch: WatchProcess;

/** The config with this cluster's streaming settings (undefined: no streaming key at all). */
async function writeConfig(streaming: Record<string, unknown> | undefined): Promise<void> {
  const dsn = `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`;
  await writeFile(configFile, JSON.stringify({
    clusters: [{ name: 'live', nodes: [{ name: 'db1', dsn }] }],
    alerting: { state_dir: join(configFile, '..', 'state'), timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 } },
    backups: {
      repositories: [{ name: 'streamed', type: 'local', path: repo }],
      // No job ever runs: only streaming is under test.
      clusters: { live: { schedule: { full: null, logical: null, drill: null }, ...(streaming === undefined ? {} : { streaming }) } },
    },
  }, null, 2));
}

/** Reloads and waits for the watcher's line saying it took the file (the nth reload of this test). */
async function reload(nth: number): Promise<void> {
  watch.child.kill('SIGHUP');
  await waitFor(`reload ${nth} to be taken`, async () => watch.stderr.filter((line) => line.startsWith(`config reloaded from ${configFile}`)).length >= nth);
}

function streamingEvents(): Record<string, unknown>[] {
  return parseEvents(watch.stdout).filter((event) => event['type'] === 'wal_streaming');
}

function receiverEvents(event: string): Record<string, unknown>[] {
  return parseEvents(watch.stdout).filter((line) => line['type'] === 'wal_receiver' && line['event'] === event);
}

/** The slots the pgwarden receiver streams from right now. */
async function walsenderSlots(): Promise<string[]> {
  const rows = await primary.sql(`select s.slot_name from pg_stat_replication r join pg_replication_slots s on s.active_pid = r.pid
    where r.application_name = 'pgwarden-receivewal' and r.state = 'streaming' order by 1`);
  return rows.map((row) => String(row['slot_name']));
}

async function slotActive(slot: string): Promise<boolean | undefined> {
  const rows = await primary.sql(`select active from pg_replication_slots where slot_name = '${slot}'`);
  return rows[0]?.['active'] as boolean | undefined;
}

beforeAll(async () => {
  repo = await scratch.dir('repo');
  const etc = await scratch.dir('etc');
  configFile = join(etc, 'pgwarden.json');
  // A regular file where the spool directory's parent should be: creating the spool fails until it is removed.
  blocker = join(etc, 'blocker');
  await writeFile(blocker, 'not a directory\n');
  primary = await createPrimary({ name: 'watch-streaming-reload' });
  await writeConfig({ enabled: false });
  watch = spawnWatch(configFile, { PGWARDEN_WATCH_INTERVALS_MS: 'tick=250,fast=1000,normal=1000' });
}, 120_000);

afterAll(async () => {
  await stopWatch(watch);
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('WAL streaming follows config reloads', () => {
  it('disabled at start: no receiver while the watcher runs its steps', async () => {
    // The backups check of an empty repository fires after two catalog reads: many steps have run by then.
    await waitFor('the backups check to fire', async () => alertEvents(watch.stdout, { check: 'backups', cluster: 'live', kind: 'firing' }).length > 0);
    expect(streamingEvents()).toEqual([]);
    expect(await walsenderSlots()).toEqual([]);
  });

  it('enabled with a spool directory that cannot be created: it says so once, and a reload after the fix starts it', async () => {
    const spoolDir = join(blocker, 'spool');
    await writeConfig({ enabled: true, spool_dir: spoolDir });
    await reload(1);
    const failed = await waitFor('the failed start', async () => streamingEvents()[0]);
    expect(failed).toMatchObject({ cluster: 'live', change: 'started', reason: 'enabled by the reloaded config', slot: 'pgwarden_live', spool_dir: spoolDir, state: 'failed' });
    expect(String(failed['error'])).toContain(`cannot create the spool directory ${spoolDir}`);
    expect(watch.stderr.find((line) => line.startsWith('live: wal streaming did not start'))).toContain('fix the cause, then reload the config (SIGHUP) to retry');

    // An invalid file is no reload: nothing is retried. The monitor alert it raises fires on its
    // second evaluation, so several steps ran meanwhile, and none retried the failed start.
    await writeConfig({ enabled: true, spool_dir: spoolDir, slot: 'Not-A-Slot' });
    watch.child.kill('SIGHUP');
    await waitFor('the config reload alert', async () => alertEvents(watch.stdout, { check: 'monitor', subject: 'config reload', kind: 'firing' }).length > 0);
    expect(receiverEvents('failed')).toHaveLength(1);
    expect(streamingEvents()).toHaveLength(1);

    // The DBA removes the cause and reloads: the same settings are tried again.
    await rm(blocker);
    await writeConfig({ enabled: true, spool_dir: spoolDir });
    await reload(2);
    const retried = await waitFor('the retried start', async () => streamingEvents()[1]);
    expect(retried).toMatchObject({ change: 'restarted', slot: 'pgwarden_live', spool_dir: spoolDir, state: 'streaming', error: null });
    expect(String(retried['reason'])).toMatch(/^retried after the config reload; it had failed: cannot create the spool directory /);
    expect(receiverEvents('failed')).toHaveLength(1);
    await waitFor('a walsender on pgwarden_live', async () => (await walsenderSlots()).join() === 'pgwarden_live');
  }, 60_000);

  it('a new slot: the receiver stops, then streams on the new slot; the old slot is inactive and named in the log', async () => {
    // The same spool: two pg_receivewal in one directory would corrupt it, so the old one must be gone first.
    await writeConfig({ enabled: true, spool_dir: join(blocker, 'spool'), slot: 'live_second' });
    await reload(3);
    const restarted = await waitFor('the restart on the new slot', async () => streamingEvents()[2]);
    expect(restarted).toMatchObject({ change: 'restarted', reason: 'slot pgwarden_live → live_second', slot: 'live_second', state: 'streaming' });
    // The old receiver ended before the new one started.
    const events = parseEvents(watch.stdout);
    const retriedAt = events.findIndex((event) => event['type'] === 'wal_streaming' && String(event['reason']).startsWith('retried'));
    const order = events.slice(retriedAt + 1).flatMap((event) => {
      if (event['type'] === 'wal_streaming') return [`streaming ${String(event['change'])}`];
      const kind = event['event'];
      return event['type'] === 'wal_receiver' && (kind === 'stopped' || kind === 'started') ? [`receiver ${kind}`] : [];
    });
    expect(retriedAt).toBeGreaterThan(0);
    expect(order).toEqual(['receiver stopped', 'receiver started', 'streaming restarted']);
    await waitFor('the walsender on live_second only', async () => (await walsenderSlots()).join() === 'live_second');
    expect(await slotActive('pgwarden_live')).toBe(false);
    expect(watch.stderr.find((line) => line.startsWith('live: wal streaming restarted: slot pgwarden_live → live_second'))).toContain("the old slot pgwarden_live stays on the server and keeps WAL until dropped: select pg_drop_replication_slot('pgwarden_live')");
  }, 60_000);

  it('disabled: the receiver stops and no walsender is left; the slot and the unfinished segment are kept, and the log says so', async () => {
    const spoolDir = join(blocker, 'spool');
    await writeConfig({ enabled: false, spool_dir: spoolDir, slot: 'live_second' });
    await reload(4);
    const stopped = await waitFor('the stop', async () => streamingEvents()[3]);
    expect(stopped).toMatchObject({ change: 'stopped', reason: 'streaming.enabled is off', slot: 'live_second', spool_dir: spoolDir, state: 'stopped' });
    expect(await walsenderSlots()).toEqual([]);
    expect(await slotActive('live_second')).toBe(false);
    const line = watch.stderr.find((candidate) => candidate.startsWith('live: wal streaming stopped: streaming.enabled is off; '));
    // pg_receivewal was writing a segment when it stopped: that WAL is in no repository yet.
    expect(line).toMatch(new RegExp(`; \\d+ WAL file\\(s\\) not in every repository stay in ${spoolDir} \\(with the unfinished \\.partial segment\\); `));
    expect(line).toMatch(/; the slot live_second stays on the server and keeps WAL until dropped: select pg_drop_replication_slot\('live_second'\) unless streaming resumes on it$/);
    // A reload with nothing changed for streaming changes nothing.
    await reload(5);
    await reload(6);
    expect(streamingEvents()).toHaveLength(4);
  }, 60_000);

  it('SIGTERM stops it cleanly', async () => {
    watch.child.kill('SIGTERM');
    expect(await watch.exited).toBe(0);
    expect(watch.stderr).toContain('pgwarden watch: stopped');
  });
});
