// Physical backups end to end (issue 5 items 2 and 8, DESIGN §7 rule 7): a real cluster whose
// archive_command is `pgwarden wal push`, `pgwarden backup` into the same repository, the data
// directory rebuilt from the stored parts as docs/backups.md says, `pgwarden verify` on a sound,
// a corrupted and an encrypted backup, a backup refused while the archiver fails, and a backup
// taken from a standby. Every pgwarden run happens as the postgres user, who owns the repository.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch, type Run } from '../support/as-postgres.js';
import { createPrimary, createStandby, waitFor, type TestCluster } from '../support/cluster.js';

const execFileAsync = promisify(execFile);



const scratch = new PostgresScratch('backup');
const pgwarden = (args: readonly string[]): Promise<Run> => pgwardenAsPostgres(args);


/** A key file owned by postgres, mode 0600. */
async function keyFile(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await chown(path, ...(await scratch.owner()));
  return path;
}

function dsnOf(cluster: TestCluster): string {
  return `host=${cluster.host} port=${cluster.port} user=postgres dbname=postgres`;
}

interface Manifest {
  readonly id: string;
  readonly source: { readonly standby: boolean };
  readonly startWal: string;
  readonly stopWal: string;
  readonly timeline: number;
  readonly keyId: string | null;
  readonly compression: string;
  readonly layout?: string;
  readonly originalBytes: number;
  readonly objects: readonly { key: string; size: number; sha256: string; originalSize: number }[];
}

async function manifestOf(repo: string, id: string): Promise<Manifest> {
  return JSON.parse(await readFile(join(repo, 'backups', id, 'manifest.json'), 'utf8')) as Manifest;
}

/** Visible files under backups/<id>/ (no sidecars, no temporary files). */
async function backupFiles(repo: string, id: string): Promise<string[]> {
  try {
    return (await readdir(join(repo, 'backups', id))).filter((name) => !name.startsWith('.')).sort();
  } catch {
    return [];
  }
}

let primary: TestCluster;
let repo: string;
let keys: string;
let plainId: string;

beforeAll(async () => {
  repo = await scratch.dir('repo');
  keys = await scratch.dir('keys');
  primary = await createPrimary({ name: 'backup', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --repo ${repo} %p` });
  await primary.sql("create table t (id int primary key, note text); insert into t select g, md5(g::text) from generate_series(1, 20000) g");
  // The archive exists once a first segment is pushed.
  await primary.sql('select pg_switch_wal()');
  await waitFor('the first WAL segment in the archive', async () => (await readdir(repo)).includes('archive.json'), { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('pgwarden backup', () => {
  it('from PostgreSQL 15 the server compresses: the parts are slices of one zstd stream, the manifest written last, the archive holds the WAL from start to stop', async () => {
    const run = await pgwarden(['backup', '--dsn', dsnOf(primary), '--repo', repo, '--fast', '--part-size', '1']);
    expect(run.code, run.stderr).toBe(0);
    plainId = run.stdout.trim();
    expect(plainId).toMatch(/^\d{8}T\d{6}Z-full$/);
    expect(run.stderr).toContain('(compressed by the server)');
    expect(run.stderr).toContain('waiting for the WAL');

    const manifest = await manifestOf(repo, plainId);
    expect(manifest).toMatchObject({ id: plainId, compression: 'zstd', layout: 'stream', keyId: null, timeline: 1, source: { standby: false } });
    expect(manifest.objects.length).toBeGreaterThanOrEqual(2);
    const files = await backupFiles(repo, plainId);
    expect(files).toEqual([...manifest.objects.map((object) => object.key.split('/').pop()), 'manifest.json'].sort());
    for (const object of manifest.objects.slice(0, -1)) expect(object.size).toBe(1024 * 1024);

    const wal = await readdir(join(repo, 'wal', '00000001'));
    expect(wal).toContain(`${manifest.startWal}.zst`);
    expect(wal).toContain(`${manifest.stopWal}.zst`);
    expect(manifest.stopWal >= manifest.startWal).toBe(true);

    // docs/backups.md: the parts concatenated in order, decompressed as one stream, into tar -x.
    const target = await scratch.dir('rebuilt-stream');
    const parts = manifest.objects.map((object) => join(repo, object.key)).join(' ');
    const { stdout: tarSize } = await execFileAsync('sh', ['-c', `cat ${parts} | zstd -dqc | wc -c`]);
    // originalBytes is pg_basebackup's count of the data it sent, to the kB: about the tar's size.
    expect(Math.abs(Number(tarSize.trim()) - manifest.originalBytes) / manifest.originalBytes).toBeLessThan(0.02);
    await execFileAsync('sh', ['-c', `cat ${parts} | zstd -dqc | tar -x -C ${target}`]);
    const label = await readFile(join(target, 'backup_label'), 'utf8');
    expect(label).toContain(`(file ${manifest.startWal})`);
    expect((await readFile(join(target, 'PG_VERSION'), 'utf8')).trim()).toBe('15');
    // -X fetch: the WAL from start to stop is in the tar too, so the server never waited for its archiver.
    expect(await readdir(join(target, 'pg_wal'))).toContain(manifest.startWal);
  });

  it('--compress-on client: each part is a slice of the tar compressed on its own', async () => {
    const run = await pgwarden(['backup', '--dsn', dsnOf(primary), '--repo', repo, '--fast', '--part-size', '8', '--compress-on', 'client']);
    expect(run.code, run.stderr).toBe(0);
    const id = run.stdout.trim();
    expect(run.stderr).not.toContain('compressed by the server');
    const manifest = await manifestOf(repo, id);
    expect(manifest).toMatchObject({ id, compression: 'zstd', keyId: null });
    expect(manifest.layout).toBeUndefined();
    expect(manifest.objects.length).toBeGreaterThanOrEqual(2);
    for (const object of manifest.objects.slice(0, -1)) expect(object.originalSize).toBe(8 * 1024 * 1024);

    // docs/backups.md: decompress the parts in order, concatenated, into tar -x.
    const target = await scratch.dir('rebuilt');
    const parts = manifest.objects.map((object) => join(repo, object.key)).join(' ');
    await execFileAsync('sh', ['-c', `for f in ${parts}; do zstd -dqc "$f"; done | tar -x -C ${target}`]);
    const label = await readFile(join(target, 'backup_label'), 'utf8');
    expect(label).toContain(`(file ${manifest.startWal})`);
    expect((await readdir(join(target, 'global'))).includes('pg_control')).toBe(true);
    const verify = await pgwarden(['verify', id, '--repo', repo]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  });

  it('verifies the backup, then names the corrupted object and exits 1', async () => {
    const sound = await pgwarden(['verify', plainId, '--repo', repo]);
    expect(sound, sound.stderr).toMatchObject({ code: 0 });
    expect(sound.stdout).toContain(`backup ${plainId}: ok`);

    const manifest = await manifestOf(repo, plainId);
    const victim = manifest.objects[1]!;
    const path = join(repo, victim.key);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    const middle = Math.floor(damaged.length / 2);
    damaged[middle] = (damaged[middle] ?? 0) ^ 0xff;
    await writeFile(path, damaged);
    try {
      const run = await pgwarden(['verify', plainId, '--repo', repo]);
      expect(run.code).toBe(1);
      expect(run.stdout).toContain(victim.key);
      // One problem line; the recovery window itself is still continuous.
      const lines = run.stdout.trim().split('\n');
      expect(lines.filter((line) => !line.startsWith('recovery window: ok'))).toHaveLength(1);
      expect(lines.some((line) => line.startsWith('recovery window: ok'))).toBe(true);
    } finally {
      await writeFile(path, original);
    }
  });

  it('a missing WAL segment: verify --all names the gap in the recovery window and exits 1 until the segment is back', async () => {
    // Three more segments after the backups, each with a commit in it.
    for (let i = 0; i < 3; i++) {
      await primary.sql(`create table gap_${i} (id int)`);
      await primary.sql('select pg_switch_wal()');
    }
    const current = (await primary.psql("select pg_walfile_name(pg_current_wal_lsn())")).trim();
    const archived = async (): Promise<string[]> => (await readdir(join(repo, 'wal', current.slice(0, 8)))).filter((name) => /^[0-9A-F]{24}\./.test(name)).sort();
    const files = await waitFor('the last switched segment in the archive', async () => {
      const names = await archived();
      const previous = (BigInt(`0x${current.slice(16)}`) - 1n).toString(16).toUpperCase().padStart(8, '0');
      return names.some((name) => name.startsWith(`${current.slice(0, 16)}${previous}`)) ? names : undefined;
    });
    const victim = files[files.length - 2] ?? '';
    const path = join(repo, 'wal', current.slice(0, 8), victim);
    const saved = await readFile(path);
    await rm(path);
    try {
      const run = await pgwarden(['verify', '--all', '--repo', repo]);
      expect(run.code, run.stderr).toBe(1);
      expect(run.stdout).toContain(`WAL gap on timeline 1: ${victim.slice(0, 24)}`);
      expect(run.stdout).not.toContain('recovery window: ok');
    } finally {
      await writeFile(path, saved);
    }
    const healed = await pgwarden(['verify', '--all', '--repo', repo]);
    expect(healed.code, healed.stdout + healed.stderr).toBe(0);
    expect(healed.stdout).toContain('recovery window: ok');
    const records = (await backupFiles(repo, plainId)).filter((name) => name.startsWith('verify-'));
    expect(records.length).toBeGreaterThanOrEqual(1);
  });

  it('encrypts with the given key and verifies only with that key', async () => {
    const key = await keyFile(keys, 'k1.key');
    const other = await keyFile(keys, 'k1-other.key');
    const run = await pgwarden(['backup', '--dsn', dsnOf(primary), '--repo', repo, '--fast', '--key', `k1=${key}`, '--compression', 'gzip']);
    expect(run.code, run.stderr).toBe(0);
    const id = run.stdout.trim();
    const manifest = await manifestOf(repo, id);
    expect(manifest).toMatchObject({ keyId: 'k1', compression: 'gzip' });
    for (const object of manifest.objects) expect(object.key).toMatch(/\.gz\.enc$/);
    // The stored bytes are not the tar: no file name of the data directory in clear.
    const first = await readFile(join(repo, manifest.objects[0]!.key));
    expect(first.subarray(0, 8).toString('latin1')).toBe('PGWENC01');

    const good = await pgwarden(['verify', id, '--repo', repo, '--key', `k1=${key}`]);
    expect(good, good.stdout + good.stderr).toMatchObject({ code: 0 });
    const wrong = await pgwarden(['verify', id, '--repo', repo, '--key', `k1=${other}`]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toMatch(/key/i);
    expect(wrong.stdout).toContain(manifest.objects[0]!.key);
    const none = await pgwarden(['verify', id, '--repo', repo]);
    expect(none.code).toBe(1);
    expect(none.stdout).toContain('encrypted with key k1 and no key was given');
  });

  it('from a standby: records it, waits for the primary to archive the stop WAL', async () => {
    const standby = await createStandby(primary, { name: 'backup-standby' });
    try {
      const pending = pgwarden(['backup', '--dsn', dsnOf(standby), '--repo', repo, '--fast', '--archive-timeout', '60']);
      let finished = false;
      void pending.then(() => { finished = true; });
      // The primary must switch past the standby's stop point: archive_timeout does this in production.
      await waitFor('the standby backup to finish', async () => {
        if (finished) return true;
        await primary.sql("insert into t values ((select max(id) + 1 from t), 'x'); select pg_switch_wal()");
        return false;
      }, { timeoutMs: 60_000, intervalMs: 500 });
      const run = await pending;
      expect(run.code, run.stderr).toBe(0);
      const manifest = await manifestOf(repo, run.stdout.trim());
      expect(manifest.source.standby).toBe(true);
      const wal = await readdir(join(repo, 'wal', '00000001'));
      expect(wal).toContain(`${manifest.stopWal}.zst`);
    } finally {
      await standby.destroy();
    }
  }, 120_000);

  it('discards a backup from a standby that was promoted before the backup counted', async () => {
    // archive_mode off: the promoted standby must not archive a new timeline into this repository.
    const standby = await createStandby(primary, { name: 'backup-promoted', settings: { archive_mode: 'off' } });
    try {
      const before = new Set(await readdir(join(repo, 'backups')));
      // The standby's replay position inside a segment the primary has not archived yet: the backup's stop WAL.
      const [written] = await primary.sql("insert into t values ((select max(id) + 1 from t), 'z'); select pg_current_wal_lsn()::text as lsn");
      await waitFor('the standby to replay the insert', async () => {
        const [row] = await standby.sql(`select pg_last_wal_replay_lsn() >= '${String(written?.['lsn'])}'::pg_lsn as done`);
        return row?.['done'] === true;
      });
      const child = spawn('runuser', ['-u', 'postgres', '--', process.execPath, pgwardenBin, 'backup', '--dsn', dsnOf(standby), '--repo', repo, '--fast', '--archive-timeout', '60'], { cwd: tmpdir() });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString('utf8'); });
      child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8'); });
      const exited = new Promise<number | null>((done) => child.on('close', done));
      // pg_basebackup is done and pgwarden waits for the primary to archive the stop WAL: promote now.
      await waitFor('the backup to wait for its WAL', () => Promise.resolve(stderr.includes('waiting for the WAL')), { timeoutMs: 30_000 });
      await standby.promote();
      let code: number | null | undefined;
      void exited.then((value) => { code = value; });
      await waitFor('the backup to end', async () => {
        if (code !== undefined) return true;
        await primary.sql("insert into t values ((select max(id) + 1 from t), 'y'); select pg_switch_wal()");
        return false;
      }, { timeoutMs: 60_000, intervalMs: 500 });
      expect(code, stderr).toBe(1);
      expect(stdout).toBe('');
      expect(stderr).toContain('was promoted during the backup');
      const added = (await readdir(join(repo, 'backups'))).filter((id) => !before.has(id));
      for (const id of added) expect(await backupFiles(repo, id)).toEqual([]);
    } finally {
      await standby.destroy();
    }
  }, 120_000);

  it('fails and leaves no manifest when the WAL archiver does not work', async () => {
    await primary.sql("alter system set archive_command = 'false'");
    await primary.sql('select pg_reload_conf()');
    try {
      const before = new Set(await readdir(join(repo, 'backups')));
      const run = await pgwarden(['backup', '--dsn', dsnOf(primary), '--repo', repo, '--fast', '--archive-timeout', '3']);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('backup failed, nothing of it is kept');
      expect(run.stderr).toMatch(/archiver has failed \d+ times/);
      const added = (await readdir(join(repo, 'backups'))).filter((id) => !before.has(id));
      for (const id of added) expect(await backupFiles(repo, id)).toEqual([]);
    } finally {
      await primary.sql('alter system reset archive_command');
      await primary.sql('select pg_reload_conf()');
    }
  });
});
