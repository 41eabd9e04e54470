/**
 * `pgwarden --watch` with backup settings (src/watch/backup-jobs.ts): a cluster whose repository
 * holds no restorable backup gets a full backup at once, run as a child job with progress events,
 * then retention; the backups check resolves once the catalog shows the backup. A cluster whose
 * repository has no WAL archive gets the same job, which fails: the failure is a critical alert
 * with the job's own reason, and the job records survive in the state directory.
 */
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenBin, PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { alertEvents, parseEvents, spawnWatch, stopWatch, type WatchProcess } from '../support/watch.js';

const scratch = new PostgresScratch('watch-backups');
let primary: TestCluster;
let repo: string;
let emptyRepo: string;
let streamRepo: string;
let stateDir: string;
let watch: WatchProcess;

function jobEvents(cluster: string): Record<string, unknown>[] {
  return parseEvents(watch.stdout).filter((event) => event['type'] === 'backup_job' && event['cluster'] === cluster);
}

beforeAll(async () => {
  repo = await scratch.dir('repo');
  emptyRepo = await scratch.dir('empty');
  streamRepo = await scratch.dir('streamed');
  stateDir = await scratch.dir('state');
  const etc = await scratch.dir('etc');
  const configFile = join(etc, 'pgwarden.json');
  primary = await createPrimary({ name: 'watch-backups', archiveCommand: `${process.execPath} ${pgwardenBin} wal push %p --config ${configFile} --cluster prod` });
  const dsn = `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`;
  await writeFile(configFile, JSON.stringify({
    clusters: [
      { name: 'prod', nodes: [{ name: 'db1', dsn }] },
      { name: 'noarchive', nodes: [{ name: 'db1', dsn }] },
      { name: 'stream', nodes: [{ name: 'db1', dsn }] },
    ],
    alerting: { state_dir: stateDir, timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 } },
    backups: {
      repositories: [{ name: 'local', type: 'local', path: repo }, { name: 'empty', type: 'local', path: emptyRepo }, { name: 'streamed', type: 'local', path: streamRepo }],
      clusters: {
        // Scheduled far away: only the "no restorable backup yet" rule starts a job in this test.
        '*': { schedule: { full: '0 3 1 1 *', logical: null, drill: null } },
        prod: { repositories: ['local'] },
        // Streaming into a repository of its own: see docs/wal-streaming.md on sharing one with archive_command.
        stream: { repositories: ['streamed'], schedule: { full: null }, streaming: { enabled: true } },
        noarchive: { repositories: ['empty'] },
      },
    },
  }, null, 2));
  await primary.sql('create table t (id int)');
  await primary.sql('select pg_switch_wal()');
  await waitFor('the archive in the repository', async () => (await readdir(repo)).includes('archive.json'));
  watch = spawnWatch(configFile, { PGWARDEN_WATCH_INTERVALS_MS: 'tick=250,fast=1000,normal=1500' });
}, 120_000);

afterAll(async () => {
  await stopWatch(watch);
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('backups under --watch', () => {
  it('takes the first full backup at once, with progress events, then applies retention; the check resolves', async () => {
    const done = await waitFor('the full backup job to end', async () => jobEvents('prod').find((event) => event['job'] === 'full' && (event['state'] === 'succeeded' || event['state'] === 'failed')), { timeoutMs: 90_000 });
    expect(done, watch.stderr.join('\n')).toMatchObject({ state: 'succeeded', exit_code: 0 });
    const states = jobEvents('prod').filter((event) => event['job'] === 'full').map((event) => event['state']);
    expect(states[0]).toBe('started');
    expect(states).toContain('progress');
    const id = String(done['summary']);
    expect(id).toMatch(/^\d{8}T\d{6}Z-full$/);
    expect(await readdir(join(repo, 'backups', id))).toContain('manifest.json');

    await waitFor('retention after the backup', async () => jobEvents('prod').find((event) => event['job'] === 'expire' && event['state'] === 'succeeded'));
    // The catalog now holds a restorable backup: no backups alert of prod stays open.
    await waitFor('the backups check of prod to be clear', async () => {
      const events = alertEvents(watch.stdout, { check: 'backups', cluster: 'prod' });
      const open = new Map<string, string>();
      for (const event of events) open.set(String(event['subject']), String(event['kind']));
      return [...open.values()].every((kind) => kind === 'resolved') ? true : undefined;
    });
    const records = JSON.parse(await readFile(join(stateDir, 'backup-jobs.json'), 'utf8')) as Record<string, Record<string, { ok: boolean }>>;
    expect(records['prod']?.['full']?.ok).toBe(true);
    expect(records['prod']?.['expire']?.ok).toBe(true);
  }, 120_000);

  it('streams WAL with pg_receivewal through a replication slot into the repository', async () => {
    await waitFor('pg_receivewal to start', async () => parseEvents(watch.stdout).find((event) => event['type'] === 'wal_receiver' && event['cluster'] === 'stream' && event['event'] === 'started'));
    const slot = await waitFor('the slot to be active', async () => {
      const rows = await primary.sql("select slot_name, active from pg_replication_slots where slot_name = 'pgwarden_stream'");
      return rows[0]?.['active'] === true ? rows[0] : undefined;
    });
    expect(slot['slot_name']).toBe('pgwarden_stream');
    await primary.sql('insert into t values (1)');
    const current = (await primary.psql('select pg_walfile_name(pg_current_wal_lsn())')).trim();
    await primary.sql('select pg_switch_wal()');
    const pushed = await waitFor('the streamed segment to be pushed', async () =>
      parseEvents(watch.stdout).find((event) => event['type'] === 'wal_receiver' && event['event'] === 'pushed' && event['name'] === current));
    expect(pushed['cluster']).toBe('stream');
    expect((await readdir(join(streamRepo, 'wal', '00000001'))).some((name) => name.startsWith(current))).toBe(true);
  }, 60_000);

  it('a job that fails is a critical alert with its reason, and a repository without backups is one too', async () => {
    const failed = await waitFor('the failed job of noarchive', async () => jobEvents('noarchive').find((event) => event['job'] === 'full' && event['state'] === 'failed'), { timeoutMs: 90_000 });
    expect(failed['exit_code']).toBe(1);
    expect(String(failed['summary'])).toContain('holds no WAL archive');
    const firing = await waitFor('the job alert to fire', async () => alertEvents(watch.stdout, { check: 'backups', cluster: 'noarchive', subject: 'job full' }).find((event) => event['kind'] === 'firing'));
    expect(firing['severity']).toBe('critical');
    expect((firing['finding'] as { message: string }).message).toContain('holds no WAL archive');
    const none = await waitFor('the no-backup alert to fire', async () => alertEvents(watch.stdout, { check: 'backups', cluster: 'noarchive', subject: 'restorable' }).find((event) => event['kind'] === 'firing'));
    expect((none['finding'] as { message: string }).message).toContain('no restorable backup');
    // Not retried at every tick: one job until its schedule comes.
    expect(jobEvents('noarchive').filter((event) => event['state'] === 'started')).toHaveLength(1);
  }, 120_000);
});
