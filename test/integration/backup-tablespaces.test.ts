// Backups of a cluster with a tablespace, end to end (issue 5; docs/backups.md and docs/restore.md,
// "Tablespaces"): a real cluster archiving with `pgwarden wal push`, a tablespace in a directory
// owned by postgres with a table in it; `pgwarden backup` stages pg_basebackup's tars in a private
// directory under TMPDIR (gone afterwards) and stores base and tablespace tars in parts; verify
// passes and names a damaged tablespace part; restores with --tablespace-map into new directories
// (the server-compressed stream layout and the client-compressed parts layout), started: the rows
// are there and the table's file lives under the new directory; a restore without a map into the
// live, non-empty location is refused and writes nothing; a drill passes without touching the live
// location; a backup interrupted by SIGINT leaves no staging directory behind.
// Every pgwarden run happens as the postgres user, who owns the repository and the restored dirs.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chown, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch, type Run } from '../support/as-postgres.js';
import { restoredPort, restoreTarget } from '../support/restores.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { drillRecords, processesUsing } from '../support/drills.js';

const execFileAsync = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

const scratch = new PostgresScratch('tblspc');
let primary: TestCluster;
let repo: string;
let dsn: string;
/** The live tablespace's location, and TMPDIR of the backups (where they stage). */
let location: string;
let staging: string;
let oid: number;
/** base/<db>/<relfilenode> of table t inside the tablespace (pg_relation_filepath after pg_tblspc/<oid>/). */
let fileInTablespace: string;
/** The server-compressed backup (layout stream) and the client-compressed, encrypted one (layout parts). */
let streamId: string;
let partsId: string;
/** `--key k1=FILE`: the parts backup's key, for every command that reads it. */
let key: string[];
const ROWS = 2000;

interface Manifest {
  readonly layout?: string;
  readonly objects: readonly { key: string }[];
  readonly tablespaces?: readonly { oid: number; name: string; location: string; objects: readonly string[] }[];
}

async function manifestOf(id: string): Promise<Manifest> {
  return JSON.parse(await readFile(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as Manifest;
}

const pgwarden = (args: readonly string[]): Promise<Run> => pgwardenAsPostgres(args, { timeoutMs: 150_000, env: { TMPDIR: staging } });

async function backup(extra: readonly string[]): Promise<string> {
  const run = await pgwarden(['backup', '--dsn', dsn, '--repo', repo, '--fast', ...extra]);
  expect(run.code, run.stderr).toBe(0);
  expect(run.stderr).toContain(`pg_basebackup writes its tars into ${staging}/pgwarden-backup-`);
  expect(await readdir(staging)).toEqual([]);
  return run.stdout.trim();
}

const targetDir = (name: string): Promise<string> => restoreTarget(scratch, name);

const portOf = restoredPort;

async function queryOn<T>(port: number, sql: string): Promise<T[]> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Every path under `dir` with its size and mtime: what a restore must not change. */
async function snapshot(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return Promise.all(entries.sort().map(async (entry) => {
    const info = await stat(join(dir, entry));
    return `${entry} ${info.size} ${info.mtimeMs}`;
  }));
}

/** Restores `id` with the tablespace mapped to a new directory, starts it, and checks rows, link and file. */
async function restoreMapped(id: string, name: string, keyArgs: readonly string[] = []): Promise<void> {
  const dir = await targetDir(name);
  const mapped = join(await scratch.dir(`${name}-ts`), 'new', 'space');
  const run = await pgwarden(['restore', '--repo', repo, '--to', id, '--target-dir', dir, '--tablespace-map', `${location}=${mapped}`, '--start', ...keyArgs]);
  expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
  expect(run.stdout).toContain(`tablespace ts1 (oid ${oid}) restored into ${mapped} (mapped`);
  expect(run.stderr).toMatch(/tablespace ts1: part 1\/\d+ .* verified and unpacked/);
  const port = portOf(run);
  const [count] = await queryOn<{ n: string; sum: string }>(port, 'select count(*)::text as n, sum(id)::text as sum from t');
  expect(count).toEqual({ n: String(ROWS), sum: String((ROWS * (ROWS + 1)) / 2) });
  const [where] = await queryOn<{ location: string; path: string }>(port, `select pg_tablespace_location(${oid}) as location, pg_relation_filepath('t') as path from pg_class where relname = 't'`);
  expect(where?.location).toBe(mapped);
  expect(where?.path).toMatch(new RegExp(`^pg_tblspc/${oid}/`));
  expect(await readlink(join(dir, 'pg_tblspc', String(oid)))).toBe(mapped);
  expect((await stat(join(mapped, fileInTablespace))).size).toBeGreaterThan(0);
  await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), 'stop', '-D', dir, '-m', 'fast', '-w']);
}

beforeAll(async () => {
  repo = await scratch.dir('repo');
  staging = await scratch.dir('staging');
  location = await scratch.dir('space');
  primary = await createPrimary({ name: 'tblspc', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --repo ${repo} %p` });
  dsn = `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`;
  await primary.sql(`create tablespace ts1 location '${location}'`);
  await primary.sql(`create table t (id int primary key, note text not null) tablespace ts1; insert into t select g, repeat(md5(g::text), 20) from generate_series(1, ${ROWS}) g`);
  const [row] = await primary.sql(`select oid, (select pg_relation_filepath('t')) as path from pg_tablespace where spcname = 'ts1'`);
  oid = Number(row?.['oid']);
  fileInTablespace = String(row?.['path']).replace(new RegExp(`^pg_tblspc/${oid}/`), '');
  await primary.sql('select pg_switch_wal()');
  await waitFor('the first WAL segment in the archive', async () => (await readdir(repo)).includes('archive.json'), { timeoutMs: 30_000 });
  streamId = await backup([]);
  // Backup ids are unique to the second.
  const second = new Date().toISOString().slice(0, 19);
  await waitFor('the next second (a new backup id)', () => Promise.resolve(new Date().toISOString().slice(0, 19) !== second), { timeoutMs: 5_000 });
  const keyPath = join(await scratch.dir('keys'), 'k1.key');
  await writeFile(keyPath, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await chown(keyPath, ...(await scratch.owner()));
  key = ['--key', `k1=${keyPath}`];
  partsId = await backup(['--compress-on', 'client', '--part-size', '1', ...key]);
}, 240_000);

afterAll(async () => {
  // The server first: its archive_command writes into the repository until it stops.
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('backups of a cluster with tablespaces', () => {
  it('records the tablespace and its parts in the manifest, apart from the data directory', async () => {
    for (const [id, layout] of [[streamId, 'stream'], [partsId, undefined]] as const) {
      const manifest = await manifestOf(id);
      expect(manifest.layout).toBe(layout);
      expect(manifest.tablespaces).toEqual([{ oid, name: 'ts1', location, objects: expect.any(Array) as unknown }]);
      const tablespaceKeys = manifest.tablespaces?.[0]?.objects ?? [];
      expect(tablespaceKeys.length).toBeGreaterThan(0);
      for (const object of tablespaceKeys) expect(object).toMatch(new RegExp(`^backups/${id}/tablespace-${oid}\\.tar\\.\\d{6}\\.zst${id === partsId ? '\\.enc' : ''}$`));
      // Every part is among the objects: the data directory's first, then the tablespace's.
      const keys = manifest.objects.map((object) => object.key);
      expect(keys.slice(-tablespaceKeys.length)).toEqual(tablespaceKeys);
      expect(keys.slice(0, -tablespaceKeys.length).every((key) => key.includes('/pgdata.tar.'))).toBe(true);
    }
    // 2000 rows of 640 bytes: the parts layout cut the tablespace's tar at 1 MiB.
    expect((await manifestOf(partsId)).tablespaces?.[0]?.objects.length).toBeGreaterThan(1);
  });

  it('verify checks the tablespace parts: ok, then a damaged one is named', async () => {
    for (const id of [streamId, partsId]) {
      const sound = await pgwarden(['verify', id, '--repo', repo, ...key]);
      expect(sound.code, sound.stdout + sound.stderr).toBe(0);
    }
    const victim = (await manifestOf(streamId)).tablespaces?.[0]?.objects[0] ?? '';
    const path = join(repo, victim);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    const middle = Math.floor(damaged.length / 2);
    damaged[middle] = (damaged[middle] ?? 0) ^ 0xff;
    await writeFile(path, damaged);
    try {
      const run = await pgwarden(['verify', streamId, '--repo', repo]);
      expect(run.code).toBe(1);
      expect(run.stdout).toContain(victim);
    } finally {
      await writeFile(path, original);
    }
  });

  it('restores with --tablespace-map into a new directory: the rows are there and the table lives under it (server-compressed backup)', async () => {
    await restoreMapped(streamId, 'map-stream');
  });

  it('restores with --tablespace-map a backup compressed part by part and encrypted', async () => {
    await restoreMapped(partsId, 'map-parts', key);
  });

  it('a damaged tablespace part fails the restore naming it; run again once it is sound, the half-written tablespace directory is taken up again', async () => {
    const manifest = await manifestOf(partsId);
    const keys = manifest.tablespaces?.[0]?.objects ?? [];
    const victim = keys[1] ?? '';
    const path = join(repo, victim);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    const middle = Math.floor(damaged.length / 2);
    damaged[middle] = (damaged[middle] ?? 0) ^ 0xff;
    const dir = await targetDir('resume');
    const mapped = join(await scratch.dir('resume-ts'), 'space');
    const args = ['restore', '--repo', repo, ...key, '--to', partsId, '--target-dir', dir, '--tablespace-map', `${location}=${mapped}`];
    await writeFile(path, damaged);
    let run: Run;
    try {
      run = await pgwarden(args);
    } finally {
      await writeFile(path, original);
    }
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
    expect(run.stderr).toContain(`tablespace ts1: part 2/${keys.length} (${victim})`);
    expect((await readdir(mapped)).length).toBeGreaterThan(0);
    expect(existsSync(join(dir, 'recovery.signal'))).toBe(false);

    // A different restore may not write into that directory: only the same one resumes there.
    const other = await pgwarden(['restore', '--repo', repo, ...key, '--to', partsId, '--target-dir', await targetDir('other'), '--tablespace-map', `${location}=${mapped}`]);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(`would be restored into ${mapped}, which is not empty`);

    const resumed = await pgwarden([...args, '--start']);
    expect(resumed.code, `${resumed.stdout}\n${resumed.stderr}`).toBe(0);
    const [count] = await queryOn<{ n: string }>(portOf(resumed), 'select count(*)::text as n from t');
    expect(count?.n).toBe(String(ROWS));
    await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), 'stop', '-D', dir, '-m', 'fast', '-w']);
  });

  it('refuses a restore into the live, non-empty tablespace location before writing anything', async () => {
    const before = await snapshot(location);
    expect(before.length).toBeGreaterThan(0);
    const dir = await targetDir('unmapped');
    const run = await pgwarden(['restore', '--repo', repo, '--to', streamId, '--target-dir', dir]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(2);
    expect(run.stderr).toContain(`tablespace ts1 (oid ${oid}, ${location} in the backup) would be restored into ${location}, which is not empty`);
    expect(run.stderr).toContain(`--tablespace-map ${location}=NEWDIR`);
    expect(existsSync(dir)).toBe(false);
    expect(await snapshot(location)).toEqual(before);

    // A map that names no tablespace of the backup (a typo) is refused too.
    const typo = await pgwarden(['restore', '--repo', repo, '--to', streamId, '--target-dir', dir, '--tablespace-map', `${location}x=/tmp/elsewhere`]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain(`has no tablespace at ${location}x`);
    expect(existsSync(dir)).toBe(false);
  });

  it('a drill restores the tablespace into its scratch directory, passes, and leaves the live location alone', async () => {
    const before = await snapshot(location);
    const parent = await scratch.dir('drill');
    const run = await pgwarden(['drill', '--repo', repo, ...key, '--dsn', dsn, '--table', 'public.t', '--target-dir', parent]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toContain(`ok rows public.t: ${ROWS} rows, as on the source at the restore point`);
    expect(run.stderr).toMatch(new RegExp(`tablespace ts1 \\(oid ${oid}\\) into ${parent}/\\S+-tablespaces/${oid} \\(mapped from ${location}\\)`));
    const [record] = await drillRecords(repo);
    expect(record).toMatchObject({ ok: true });
    expect(await readdir(parent)).toEqual([]);
    expect(await processesUsing(parent)).toEqual([]);
    expect(await snapshot(location)).toEqual(before);
  });

  it('a backup interrupted by SIGINT while pg_basebackup runs leaves no staging directory', async () => {
    // Dirty buffers make the spread checkpoint (no --fast) take minutes: the backup is caught in it.
    await primary.sql('update t set note = note');
    const child = spawn('runuser', ['-u', 'postgres', '--', process.execPath, pgwardenBin, 'backup', '--dsn', dsn, '--repo', repo], { env: { ...process.env, TMPDIR: staging }, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.on('close', (code, signal) => done({ code, signal })));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
    try {
      await waitFor('the backup waiting for its checkpoint, staged', async () => {
        const rows = await primary.sql("select phase from pg_stat_progress_basebackup where phase = 'waiting for checkpoint to finish'");
        return rows.length > 0 && (await readdir(staging)).some((name) => name.startsWith('pgwarden-backup-'));
      }, { timeoutMs: 30_000 });
      // runuser would relay the signal late: interrupt node itself.
      const [node] = (await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')).trim().split(/\s+/).map(Number);
      expect(node).toBeGreaterThan(0);
      process.kill(node ?? 0, 'SIGINT');
      const outcome = await exited;
      expect(outcome.code === 0, stderr).toBe(false);
      expect(await readdir(staging)).toEqual([]);
      await waitFor('pg_basebackup gone', async () => (await processesUsing(staging)).length === 0, { timeoutMs: 10_000 });
    } finally {
      child.kill('SIGKILL');
      await primary.sql('checkpoint');
    }
  });
});
