// `pgwarden drill` interrupted by a signal (DESIGN §7; docs/drills.md, "Interrupting a drill"):
// the drill runs as a real process, as the postgres user, and is signalled itself (as the
// watcher's stop() and the console's job stop do). Stopped while a custom SQL check runs on the
// restored copy, it stops the copy's server, removes its directory, records a failed drill whose
// reason names the signal, and exits 1 within seconds; a second signal during that clean-up is
// answered with a notice, not obeyed. Stopped as the copy's server starts (pg_ctl start waiting,
// or recovery), the server is stopped all the same. Stopped while it waits for its restore
// point's WAL (the archiver is broken), it records that too and leaves nothing behind.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DrillRecord } from '../../src/backup/drill.js';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { drillRecords, processesUsing } from '../support/drills.js';

const scratch = new PostgresScratch('drill-interrupt');

let primary: TestCluster;
let repo: string;
let parent: string;
let work: string;
let dsn: string;
let backupId: string;

/** A drill running as its own process (the postgres user), its output gathered as it comes. */
interface DrillProcess {
  readonly child: ChildProcessWithoutNullStreams;
  stderr: string;
  stdout: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

async function startDrill(args: readonly string[]): Promise<DrillProcess> {
  const [uid, gid] = await scratch.owner();
  // Node itself runs as postgres (not under runuser), so the signals below reach pgwarden only.
  const child = spawn(process.execPath, [pgwardenBin, 'drill', ...args], { uid, gid, cwd: tmpdir(), stdio: ['pipe', 'pipe', 'pipe'] });
  const run: DrillProcess = {
    child, stderr: '', stdout: '',
    exited: new Promise((done) => child.on('exit', (code, signal) => done({ code, signal, at: Date.now() }))),
  };
  child.stdout.on('data', (chunk: Buffer) => (run.stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (run.stderr += chunk.toString('utf8')));
  scratch.onCleanUp(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await run.exited;
  });
  return run;
}

/** Every drill record of this test's repository, oldest first. */
const records = (): Promise<DrillRecord[]> => drillRecords(repo);

/** Whether a TCP connection to 127.0.0.1:`port` is refused (nothing listens there). */
function refused(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      done(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED'));
  });
}


beforeAll(async () => {
  repo = await scratch.dir('repo');
  parent = await scratch.dir('target');
  work = await scratch.dir('work');
  primary = await createPrimary({ name: 'drill-interrupt', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --repo ${repo} %p` });
  dsn = `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`;
  await primary.sql("create table items (id int primary key, note text not null); insert into items select g, md5(g::text) from generate_series(1, 300) g");
  await primary.sql('select pg_switch_wal()');
  await waitFor('the first WAL segment in the archive', async () => (await readdir(repo)).includes('archive.json'), { timeoutMs: 30_000 });
  const backup = await pgwardenAsPostgres(['backup', '--dsn', dsn, '--repo', repo, '--fast'], { timeoutMs: 150_000 });
  expect(backup.code, backup.stderr).toBe(0);
  backupId = backup.stdout.trim();
}, 120_000);

afterAll(async () => {
  // The server first: its archive_command writes into the repository until it stops.
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('pgwarden drill interrupted', () => {
  it('by SIGTERM while a check runs on the copy: stops the server, removes the copy, records the interruption, exits 1; a second signal only gets a notice', async () => {
    // A custom SQL check that runs for a minute holds the drill on its restored, running copy.
    const configFile = join(work, 'config.json');
    await scratch.writeFile(configFile, JSON.stringify({
      clusters: [{ name: 'prod', nodes: [{ name: 'db1', dsn: `postgresql://postgres@${primary.host}:${primary.port}/postgres` }] }],
      backups: {
        repositories: [{ name: 'local', type: 'local', path: repo }],
        clusters: { prod: { drill: { tables: ['public.items'], target_dir: parent } } },
      },
      health: { sql: [{ name: 'slow', query: 'select 0 from pg_sleep(60)', warning: 1, critical: 2, timeout_ms: 120_000 }] },
    }));
    const before = (await records()).length;
    const drill = await startDrill(['--config', configFile, '--cluster', 'prod']);

    const restoring = await waitFor('the drill to restore into its directory', async () => /drill: restoring the latest backup \(\S+\) into (\S+) on port (\d+),/.exec(drill.stderr), { timeoutMs: 60_000 });
    const dir = restoring[1] ?? '';
    const port = Number(restoring[2]);
    expect(dir.startsWith(`${parent}/`)).toBe(true);
    await waitFor('the slow check to run on the restored copy', async () => {
      if (!drill.stderr.includes('drill: custom SQL check slow on the restored copy') || !existsSync(join(dir, 'postmaster.pid'))) return false;
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      client.on('error', () => undefined);
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>("select count(*)::text as n from pg_stat_activity where query like '%pg_sleep(60)%' and pid <> pg_backend_pid()");
        return rows[0]?.n === '1';
      } finally {
        await client.end();
      }
    }, { timeoutMs: 60_000 });
    expect(await refused(port)).toBe(false);

    const signalledAt = Date.now();
    drill.child.kill('SIGTERM');
    // The second signal arrives while the clean-up (pg_ctl stop and the rest) is under way.
    await waitFor('the drill to take the SIGTERM', async () => drill.stderr.includes('drill: SIGTERM: interrupting the drill'), { timeoutMs: 5_000, intervalMs: 5 });
    drill.child.kill('SIGINT');
    const exit = await drill.exited;

    expect(exit, `${drill.stdout}\n${drill.stderr}`).toMatchObject({ code: 1, signal: null });
    expect(exit.at - signalledAt).toBeLessThan(10_000);
    expect(drill.stderr).toContain('drill: SIGINT ignored: the clean-up is still running');
    expect(drill.stderr).toContain('drill: interrupted by SIGTERM during custom SQL checks: stopping the restored server, removing');
    expect(drill.stdout.trimEnd().split('\n')).toEqual(['FAILED custom SQL checks: interrupted by SIGTERM before the checks finished']);
    expect(drill.stderr).toMatch(/drill \S+ of cluster prod FAILED/);

    // Nothing is left: no server on the copy's directory or port, no directory.
    expect(existsSync(join(dir, 'postmaster.pid'))).toBe(false);
    expect(existsSync(dir)).toBe(false);
    expect(await readdir(parent)).toEqual([]);
    expect(await refused(port)).toBe(true);
    expect(await processesUsing(dir)).toEqual([]);

    const all = await records();
    expect(all).toHaveLength(before + 1);
    const record = all[all.length - 1];
    expect(record).toMatchObject({ ok: false, cluster: 'prod', backupId, reason: 'custom SQL checks: interrupted by SIGTERM before the checks finished' });
    expect(record?.restoreSeconds).toBeGreaterThan(0);
    expect(record?.checks.map((check) => [check.name, check.ok])).toEqual([
      ['restore point', true], ['restore', true], ['pg_amcheck', true], ['rows public.items', true], ['custom SQL checks', false],
    ]);
  });

  it('by SIGHUP as the restored server starts: the server launched is found and stopped, the copy removed, the drill recorded', async () => {
    const before = (await records()).length;
    const drill = await startDrill(['--repo', repo, '--dsn', dsn, '--table', 'public.items', '--target-dir', parent]);
    // The signal lands while pg_ctl start waits for the server, or while recovery runs.
    await waitFor('pg_ctl start', async () => drill.stderr.includes('drill: restore: starting PostgreSQL 15 on port'), { timeoutMs: 60_000, intervalMs: 2 });
    drill.child.kill('SIGHUP');
    const exit = await drill.exited;
    expect(exit, `${drill.stdout}\n${drill.stderr}`).toMatchObject({ code: 1, signal: null });

    const all = await records();
    expect(all).toHaveLength(before + 1);
    // Recovery takes a second or so here; on a starved machine the drill may reach the next step.
    expect(all[all.length - 1]?.reason).toMatch(/^(restore|pg_amcheck|rows public\.items): interrupted by SIGHUP before the checks finished$/);
    expect(all[all.length - 1]?.ok).toBe(false);
    expect(await readdir(parent)).toEqual([]);
    expect(await processesUsing(parent)).toEqual([]);
  });

  it('by SIGINT while it waits for its restore point\'s WAL: recorded as interrupted, exits 1, nothing restored', async () => {
    // Archiving fails for now: the drill waits for the segment holding its restore point.
    const [stats] = await primary.sql('select failed_count from pg_stat_archiver');
    await primary.sql("alter system set archive_command = '/bin/false'");
    await primary.sql('select pg_reload_conf()');
    try {
      // Once the archiver has failed on a segment, it archives nothing after it.
      await primary.sql('insert into items values (1000, \'stuck\')');
      await primary.sql('select pg_switch_wal()');
      await waitFor('the archiver to fail', async () => {
        const [now] = await primary.sql('select failed_count from pg_stat_archiver');
        return Number(now?.['failed_count']) > Number(stats?.['failed_count']);
      }, { timeoutMs: 30_000 });
      const before = (await records()).length;
      const drill = await startDrill(['--repo', repo, '--dsn', dsn, '--table', 'public.items', '--target-dir', parent]);
      const waiting = await waitFor('the drill to wait for its WAL', async () => /drill: waiting for WAL (\S+) in the repository/.exec(drill.stderr), { timeoutMs: 60_000 });
      const wal = waiting[1] ?? '';
      const [archiver] = await primary.sql('select last_archived_wal from pg_stat_archiver');
      expect(String(archiver?.['last_archived_wal']) < wal).toBe(true);

      const signalledAt = Date.now();
      drill.child.kill('SIGINT');
      const exit = await drill.exited;
      expect(exit, `${drill.stdout}\n${drill.stderr}`).toMatchObject({ code: 1, signal: null });
      expect(exit.at - signalledAt).toBeLessThan(10_000);
      expect(drill.stdout.trimEnd()).toBe('FAILED restore point: interrupted by SIGINT before the checks finished');

      const all = await records();
      expect(all).toHaveLength(before + 1);
      expect(all[all.length - 1]).toMatchObject({
        ok: false, backupId: null, restoreSeconds: null, reason: 'restore point: interrupted by SIGINT before the checks finished',
        checks: [{ name: 'restore point', ok: false, detail: 'interrupted by SIGINT before the checks finished' }],
      });
      expect(await readdir(parent)).toEqual([]);
    } finally {
      await primary.sql('alter system reset archive_command');
      await primary.sql('select pg_reload_conf()');
    }
  });
});
