// `pgwarden restore` end to end (issue 5 item 9, DESIGN §7 rule 6): a real cluster archiving with
// `pgwarden wal push`, a backup, then one commit per row with its time recorded, and restores of
// that backup into new directories, started and queried: to a time between two commits (exactly
// the rows committed before it), to latest (every row), to an LSN; refusals of a non-empty target
// and of a target after the archive's end (nothing written); a corrupted part that fails the
// restore naming the part, then the same restore resumed once the part is sound again.
// Every pgwarden run happens as the postgres user, who owns the repository and the restored dirs.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch, type Run } from '../support/as-postgres.js';
import { restoredPort, restoreTarget } from '../support/restores.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';

const execFileAsync = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';



const scratch = new PostgresScratch('restore');
const pgwarden = (args: readonly string[]): Promise<Run> => pgwardenAsPostgres(args);


const targetDir = (name: string): Promise<string> => restoreTarget(scratch, name);

const portOf = restoredPort;

async function idsOn(port: number): Promise<number[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const result = await client.query<{ id: number }>('select id from r order by id');
    return result.rows.map((row) => row.id);
  } finally {
    await client.end();
  }
}

async function stopServer(dir: string): Promise<void> {
  await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), 'stop', '-D', dir, '-m', 'fast', '-w']);
}

let primary: TestCluster;
let repo: string;
let backupId: string;
/** Rows 1–3 before the backup, 4–9 after it, one commit each. */
const BEFORE = [1, 2, 3];
const AFTER = [4, 5, 6, 7, 8, 9];
/** A time after commit 6 and before commit 7. */
let between6and7: string;
/** The insert position right after commit 5. */
let lsnAfter5: string;
/** An LSN near the end of the newest archived segment, after its last record: never reached. */
let lsnPastLastRecord: string;

beforeAll(async () => {
  repo = await scratch.dir('repo');
  primary = await createPrimary({ name: 'restore', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --repo ${repo} %p` });
  await primary.sql('create table r (id int primary key, started_at timestamptz not null)');
  for (const id of BEFORE) await primary.sql(`insert into r values (${id}, clock_timestamp())`);
  await primary.sql('select pg_switch_wal()');
  await waitFor('the first WAL segment in the archive', async () => (await readdir(repo)).includes('archive.json'), { timeoutMs: 30_000 });
  const backup = await pgwarden(['backup', '--dsn', `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`, '--repo', repo, '--fast', '--part-size', '1', '--compress-on', 'client']);
  expect(backup.code, backup.stderr).toBe(0);
  backupId = backup.stdout.trim();

  // One commit per row; after each commit, the time and the WAL insert position.
  const afterCommit = new Map<number, { at: string; lsn: string }>();
  for (const id of AFTER) {
    await primary.sql(`insert into r values (${id}, clock_timestamp())`);
    const [row] = await primary.sql('select clock_timestamp()::text as at, pg_current_wal_insert_lsn()::text as lsn');
    afterCommit.set(id, { at: String(row?.['at']), lsn: String(row?.['lsn']) });
  }
  // Halfway between "after commit 6" and the start of transaction 7, to the microsecond.
  const after6 = `'${afterCommit.get(6)?.at ?? ''}'::timestamptz`;
  const [mid] = await primary.sql(`
    select to_char((${after6} + (started_at - ${after6}) / 2) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as t from r where id = 7`);
  between6and7 = String(mid?.['t']);
  lsnAfter5 = afterCommit.get(5)?.lsn ?? '';
  const [switched] = await primary.sql('select pg_walfile_name(pg_switch_wal()) as name');
  const last = String(switched?.['name']);
  const segment = Number.parseInt(last.slice(16, 24), 16);
  lsnPastLastRecord = `${Number.parseInt(last.slice(8, 16), 16).toString(16).toUpperCase()}/${((segment + 1) * 16 * 1024 * 1024 - 64).toString(16).toUpperCase()}`;
  await waitFor(`WAL ${last} in the archive`, async () => (await readdir(join(repo, 'wal', '00000001'))).some((name) => name.startsWith(last)), { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  await scratch.cleanUp();
  await primary?.destroy();
});

describe('pgwarden restore', () => {
  it('to a time between two commits: exactly the rows committed before it exist (point-in-time recovery)', async () => {
    const dir = await targetDir('time');
    const run = await pgwarden(['restore', '--repo', repo, '--to', between6and7, '--target-dir', dir, '--start']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toContain(`restored backup ${backupId}`);
    expect(run.stdout).toMatch(/recovery stopping before commit/);
    expect(run.stderr).toMatch(/part 1\/\d+ .* verified and unpacked/);
    expect(await idsOn(portOf(run))).toEqual([1, 2, 3, 4, 5, 6]);

    const auto = await readFile(join(dir, 'postgresql.auto.conf'), 'utf8');
    expect(auto).toContain(`restore_command = 'if [ -f pgwarden-wal-staged/%f ]; then mv -f pgwarden-wal-staged/%f %p && exit 0; exit 126; fi; [ -f pg_wal/%f ] && exit 1; w=${repo}/wal; `);
    expect(auto).toContain("recovery_end_command = 'rm -rf pgwarden-wal-staged'");
    expect(auto).toContain(`exec ${process.execPath} ${pgwardenBin} wal fetch %f %p --repo ${repo}'`);
    expect(auto).toContain("recovery_target_action = 'promote'");
    expect(auto).toContain("archive_mode = 'off'");
    expect(JSON.parse(await readFile(join(dir, 'pgwarden-restore.json'), 'utf8'))).toMatchObject({ backupId, state: 'started' });
    await stopServer(dir);

    // The restore_command as PostgreSQL runs it (sh -c, %f and %p replaced): a file the local
    // archive lacks is answered by the shell test (exit 1, and no Node: nothing on stderr); an
    // archived one by wal fetch.
    const command = /^restore_command = '(.*)'$/m.exec(auto)?.[1]?.replace(/''/g, "'") ?? '';
    const run1 = (name: string, into: string, cwd = tmpdir()): Promise<{ code: number; stderr: string }> => execFileAsync('sh', ['-c', command.replace(/%f/g, name).replace(/%p/g, into)], { cwd }).then(
      () => ({ code: 0, stderr: '' }),
      (error: unknown) => ({ code: (error as { code: number }).code, stderr: (error as { stderr: string }).stderr }),
    );
    const absent = await run1('00000063.history', join(dir, 'absent.history'));
    expect(absent).toEqual({ code: 1, stderr: '' });
    const manifest = JSON.parse(await readFile(join(repo, 'backups', backupId, 'manifest.json'), 'utf8')) as { startWal: string };
    const fetched = await run1(manifest.startWal, join(dir, 'fetched-segment'));
    expect(fetched.code, fetched.stderr).toBe(0);
    expect((await readFile(join(dir, 'fetched-segment'))).length).toBe(16 * 1024 * 1024);
    // In the data directory (where PostgreSQL runs it), a segment the backup brought in pg_wal/ is
    // left to the server to read there: exit 1, no Node, nothing written.
    await writeFile(join(dir, 'pg_wal', manifest.startWal), 'a segment the backup brought');
    expect(await run1(manifest.startWal, join(dir, 'from-pg-wal'), dir)).toEqual({ code: 1, stderr: '' });
    expect(existsSync(join(dir, 'from-pg-wal'))).toBe(false);
  });

  it('to latest: every archived commit is there, replayed from WAL staged while the backup unpacked', async () => {
    const dir = await targetDir('latest');
    const run = await pgwarden(['restore', '--repo', repo, '--to', 'latest', '--target-dir', dir, '--start']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(await idsOn(portOf(run))).toEqual([...BEFORE, ...AFTER]);
    const staged = /restore: (\d+) WAL segment\(s\), (\w+) to (\w+), staged in pgwarden-wal-staged\//.exec(run.stderr);
    expect(staged, run.stderr).not.toBeNull();
    // Recovery took each one from there (restore_command moved it), and the rest went at its end.
    const log = await readFile(join(dir, 'pgwarden-restore.log'), 'utf8');
    expect(log).toContain(`restored log file "${staged?.[3] ?? ''}" from archive`);
    expect(existsSync(join(dir, 'pgwarden-wal-staged'))).toBe(false);
    await stopServer(dir);
  });

  it('to an LSN: the rows committed up to it', async () => {
    const dir = await targetDir('lsn');
    const run = await pgwarden(['restore', '--repo', repo, '--to', lsnAfter5, '--target-dir', dir, '--start']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(await idsOn(portOf(run))).toEqual([1, 2, 3, 4, 5]);
    await stopServer(dir);
  });

  it('to a backup id: that backup at its consistent point, none of the later commits', async () => {
    const dir = await targetDir('backup');
    const run = await pgwarden(['restore', '--repo', repo, '--to', backupId, '--target-dir', dir, '--start']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(await readFile(join(dir, 'postgresql.auto.conf'), 'utf8')).toContain("recovery_target = 'immediate'");
    expect(await idsOn(portOf(run))).toEqual(BEFORE);
    await stopServer(dir);
  });

  it('a target inside the archive that recovery never reaches: the server stops with FATAL, reported loudly, exit 1 (rule 6)', async () => {
    const dir = await targetDir('never');
    const run = await pgwarden(['restore', '--repo', repo, '--to', lsnPastLastRecord, '--target-dir', dir, '--start']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
    expect(run.stderr).toContain('RECOVERY FAILED');
    expect(run.stderr).toMatch(/FATAL: .*recovery ended before configured recovery target was reached/);
  });

  it('refuses a non-empty target directory and leaves it as it was', async () => {
    const dir = await scratch.dir('nonempty');
    await writeFile(join(dir, 'keep.txt'), 'mine');
    const run = await pgwarden(['restore', '--repo', repo, '--to', 'latest', '--target-dir', dir]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('is not empty');
    expect(await readdir(dir)).toEqual(['keep.txt']);
  });

  it('refuses a time after the end of the archive before writing anything, showing the window', async () => {
    const dir = await targetDir('future');
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const run = await pgwarden(['restore', '--repo', repo, '--to', future, '--target-dir', dir]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('after the last commit in the archived WAL');
    expect(run.stderr).toContain(`recovery window: from`);
    expect(existsSync(dir)).toBe(false);
  });

  it('fails on a corrupted part and names it; run again once the part is sound, it resumes and completes', async () => {
    const manifest = JSON.parse(await readFile(join(repo, 'backups', backupId, 'manifest.json'), 'utf8')) as { objects: { key: string }[] };
    expect(manifest.objects.length).toBeGreaterThanOrEqual(6);
    const victim = manifest.objects[5]!;
    const path = join(repo, victim.key);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    const middle = Math.floor(damaged.length / 2);
    damaged[middle] = (damaged[middle] ?? 0) ^ 0xff;
    const dir = await targetDir('corrupt');
    await writeFile(path, damaged);
    let run: Run;
    try {
      run = await pgwarden(['restore', '--repo', repo, '--to', 'latest', '--target-dir', dir]);
    } finally {
      await writeFile(path, original);
    }
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`part 6/${manifest.objects.length} (${victim.key})`);
    expect(existsSync(join(dir, 'recovery.signal'))).toBe(false);
    expect(JSON.parse(await readFile(join(dir, 'pgwarden-restore.json'), 'utf8'))).toMatchObject({ state: 'unpacking', partsDone: 5 });

    const resumed = await pgwarden(['restore', '--repo', repo, '--to', 'latest', '--target-dir', dir, '--start']);
    expect(resumed.code, `${resumed.stdout}\n${resumed.stderr}`).toBe(0);
    expect(resumed.stderr).toMatch(/resuming at part [2-6]\//);
    expect(resumed.stderr).not.toMatch(/part 1\/\d+ .* verified and unpacked/);
    expect(await idsOn(portOf(resumed))).toEqual([...BEFORE, ...AFTER]);
    await stopServer(dir);
  });
  it('a backup the server compressed (one zstd stream in slices): a damaged slice is named; run again, it unpacks again from the first part and completes', async () => {
    const backup = await pgwarden(['backup', '--dsn', `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`, '--repo', repo, '--fast', '--part-size', '1']);
    expect(backup.code, backup.stderr).toBe(0);
    const id = backup.stdout.trim();
    const manifest = JSON.parse(await readFile(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as { layout: string; objects: { key: string }[] };
    expect(manifest.layout).toBe('stream');
    expect(manifest.objects.length).toBeGreaterThanOrEqual(3);
    const victim = manifest.objects[1]!;
    const path = join(repo, victim.key);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    damaged[100] = (damaged[100] ?? 0) ^ 0xff;
    const dir = await targetDir('corrupt-stream');
    await writeFile(path, damaged);
    let run: Run;
    try {
      run = await pgwarden(['restore', '--repo', repo, '--to', id, '--target-dir', dir]);
    } finally {
      await writeFile(path, original);
    }
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`part 2/${manifest.objects.length} (${victim.key})`);
    expect(JSON.parse(await readFile(join(dir, 'pgwarden-restore.json'), 'utf8'))).toMatchObject({ state: 'unpacking', partsDone: 1 });

    const resumed = await pgwarden(['restore', '--repo', repo, '--to', id, '--target-dir', dir, '--start']);
    expect(resumed.code, `${resumed.stdout}\n${resumed.stderr}`).toBe(0);
    expect(resumed.stderr).toContain(`resuming: backup ${id} was compressed by the server as one stream, so it is unpacked again from its first part`);
    expect(resumed.stderr).toMatch(/part 1\/\d+ .* verified and unpacked/);
    // Taken after every commit of the test: restored to it, all the rows are there.
    expect(await idsOn(portOf(resumed))).toEqual([...BEFORE, ...AFTER]);
    await stopServer(dir);
  });
});
