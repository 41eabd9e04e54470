// WAL archiving end to end (issue 5 item 3, DESIGN §7 rules 1, 2, 4, 5): a real cluster whose
// archive_command is `pgwarden wal push`, a second cluster refused by the same archive, copies of
// a switched segment that differ after or before its switch record, a push killed with SIGKILL
// halfway through its upload, fetches of missing and corrupted files, and a standby restored from
// a base backup that replays the archive through `pgwarden wal fetch`.
// Every pgwarden run happens as the postgres user, as PostgreSQL runs it.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, cp, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrimary, freePort, waitFor, type TestCluster } from '../support/cluster.js';

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin', 'pgwarden.js');
const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `pgwarden <args>` as the postgres user in `cwd` (PostgreSQL runs its commands in the data directory). */
function pgwardenAsPostgres(args: readonly string[], cwd: string, env: Readonly<Record<string, string>> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile('runuser', ['-u', 'postgres', '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, BIN, ...args], { cwd, timeout: 30_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

let postgresIds: [number, number];
const cleanups: (() => Promise<void>)[] = [];

/** A temporary directory owned by postgres. */
async function postgresDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `pgwarden-wal-${name}-`));
  await chown(dir, ...postgresIds);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Copies a file (pg_wal files are mode 0600) and gives it to postgres. */
async function copyForPostgres(from: string, to: string): Promise<void> {
  await cp(from, to);
  await chown(to, ...postgresIds);
}

/** Every file under `dir`, relative paths, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1)).sort();
}

/** The repository's objects: its files without the hidden ones (temporary files, checksum sidecars). */
async function objectsUnder(dir: string): Promise<string[]> {
  return (await filesUnder(dir)).filter((file) => !file.split('/').some((part) => part.startsWith('.')));
}

/** Where the switch record of each segment the primary closed ends, as the server reports it. */
const switchEnds = new Map<string, number>();

async function switchWal(cluster: TestCluster): Promise<string> {
  const rows = await cluster.sql('select file_name, file_offset from pg_walfile_name_offset(pg_switch_wal())');
  const name = String(rows[0]?.['file_name']);
  // Another cluster's segments have the same names.
  if (cluster === primary) switchEnds.set(name, Number(rows[0]?.['file_offset']));
  return name;
}

/** A copy of an archived segment with `change` applied, owned by postgres, in a directory of its own. */
async function alteredCopy(name: string, label: string, change: (bytes: Buffer) => void): Promise<string> {
  const dir = await postgresDir(label);
  const bytes = await readFile(join(copies, name));
  change(bytes);
  await writeFile(join(dir, name), bytes);
  await chown(join(dir, name), ...postgresIds);
  return join(dir, name);
}

/** The refusal of rule 2, on one stderr line. */
function expectRefusedAsDifferent(run: Run, name: string): void {
  expect(run.code).toBe(1);
  expect(run.stderr).toMatch(new RegExp(`^pgwarden: wal push .*${name} failed: refused: ${name} is archived already with different contents .* an archived name is never overwritten; fix: `));
  expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
}

async function waitArchived(cluster: TestCluster, name: string): Promise<void> {
  await waitFor(`${cluster.name} to archive ${name}`, async () => {
    const [row] = await cluster.sql('select last_archived_wal, failed_count, last_failed_wal from pg_stat_archiver');
    if (Number(row?.['failed_count']) > 0) throw new Error(`archiving failed for ${String(row?.['last_failed_wal'])}`);
    return typeof row?.['last_archived_wal'] === 'string' && row['last_archived_wal'] >= name;
  }, { timeoutMs: 30_000 });
}

async function systemIdentifier(cluster: TestCluster): Promise<string> {
  const rows = await cluster.sql('select system_identifier::text as id from pg_control_system()');
  return String(rows[0]?.['id']);
}

let primary: TestCluster;
let repo: string;
const archived: string[] = [];
/** Copies of archived segments, taken from pg_wal right after they were archived. */
let copies: string;

beforeAll(async () => {
  const ids = await Promise.all([execFileAsync('id', ['-u', 'postgres']), execFileAsync('id', ['-g', 'postgres'])]);
  postgresIds = [Number(ids[0].stdout.trim()), Number(ids[1].stdout.trim())];
  repo = await postgresDir('repo');
  copies = await postgresDir('copies');
  primary = await createPrimary({ name: 'wal-archive', archiveCommand: `${process.execPath} ${BIN} wal push --repo ${repo} %p` });
});

afterAll(async () => {
  await primary?.destroy();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('wal push as archive_command', () => {
  it('archives each segment as it is switched, and pg_stat_archiver shows no failure', async () => {
    await primary.sql('create table t (id int primary key, note text); insert into t select g, md5(g::text) from generate_series(1, 1000) g');
    for (let round = 0; round < 2; round++) {
      const name = await switchWal(primary);
      await waitArchived(primary, name);
      await copyForPostgres(join(primary.dataDir, 'pg_wal', name), join(copies, name));
      archived.push(name);
      await primary.sql(`insert into t select g, 'round ${round}' from generate_series(${2000 + round * 1000}, ${2999 + round * 1000}) g`);
    }
    const [stats] = await primary.sql('select archived_count, failed_count from pg_stat_archiver');
    expect(Number(stats?.['failed_count'])).toBe(0);
    expect(Number(stats?.['archived_count'])).toBeGreaterThanOrEqual(2);

    const files = await filesUnder(repo);
    for (const name of archived) expect(files).toContain(`wal/00000001/${name}.zst`);
    const info = JSON.parse(await readFile(join(repo, 'archive.json'), 'utf8'));
    expect(info).toMatchObject({ format: 1, systemIdentifier: await systemIdentifier(primary), pgVersion: 15, walSegmentSize: 16 * 1024 * 1024 });
  });

  it('gives back the exact bytes of each archived segment', async () => {
    const out = await postgresDir('fetched');
    for (const name of archived) {
      const run = await pgwardenAsPostgres(['wal', 'fetch', '--repo', repo, name, join(out, 'RECOVERYXLOG')], out);
      expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
      expect((await readFile(join(out, 'RECOVERYXLOG'))).equals(await readFile(join(copies, name)))).toBe(true);
    }
    expect(await readdir(out)).toEqual(['RECOVERYXLOG']);
  });

  it('accepts the same segment pushed twice (a retry) and refuses different bytes under an archived name (rule 2)', async () => {
    const [name] = archived;
    const key = join(repo, 'wal', '00000001', `${name}.zst`);
    const before = await readFile(key);
    const again = await pgwardenAsPostgres(['wal', 'push', '--repo', repo, join(copies, name!)], primary.dataDir);
    expect(again, again.stderr).toMatchObject({ code: 0, stderr: '' });
    // An archived name is archived once, whatever the settings of the retry.
    const gzip = await pgwardenAsPostgres(['wal', 'push', '--repo', repo, '--compression', 'gzip', join(copies, name!)], primary.dataDir);
    expect(gzip, gzip.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((await objectsUnder(repo)).filter((file) => file.includes(name!))).toEqual([`wal/00000001/${name}.zst`]);

    // A valid header, different WAL: a byte in the middle of the segment's records.
    const middle = Math.floor(switchEnds.get(name!)! / 2);
    const forged = await alteredCopy(name!, 'forged', (bytes) => { bytes[middle] = (bytes[middle]! + 1) % 256; });
    expectRefusedAsDifferent(await pgwardenAsPostgres(['wal', 'push', '--repo', repo, forged], primary.dataDir), name!);
    expect((await readFile(key)).equals(before)).toBe(true);
  });

  it('accepts a copy that differs only after the segment\'s switch record, never replacing the stored one, and refuses one that differs before it', async () => {
    const [name] = archived;
    const end = switchEnds.get(name!)!;
    expect(end).toBeGreaterThan(0);
    expect(end).toBeLessThan(16 * 1024 * 1024 - 3 * 8192);
    const key = join(repo, 'wal', '00000001', `${name}.zst`);
    const before = await readFile(key);
    // What pg_receivewal's copy may hold after the switch: anything but the server's bytes.
    const otherTail = await alteredCopy(name!, 'other-tail', (bytes) => {
      bytes.fill(0xa5, end, end + 3 * 8192);
      bytes[bytes.length - 1] = 0x5a;
    });
    const accepted = await pgwardenAsPostgres(['wal', 'push', '--repo', repo, otherTail], primary.dataDir);
    expect(accepted, accepted.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((await objectsUnder(repo)).filter((file) => file.includes(name!))).toEqual([`wal/00000001/${name}.zst`]);
    expect((await readFile(key)).equals(before)).toBe(true);
    const out = await postgresDir('tail-fetched');
    const fetched = await pgwardenAsPostgres(['wal', 'fetch', '--repo', repo, name!, join(out, 'RECOVERYXLOG')], out);
    expect(fetched, fetched.stderr).toMatchObject({ code: 0 });
    expect((await readFile(join(out, 'RECOVERYXLOG'))).equals(await readFile(join(copies, name!)))).toBe(true);

    // The switch record itself (its last byte is its CRC's), and the byte just before it: refused.
    for (const [label, at] of [['switch-crc', end - 1], ['before-switch', end - 25]] as const) {
      const changed = await alteredCopy(name!, label, (bytes) => {
        bytes.fill(0xa5, end, end + 3 * 8192);
        bytes[at] = bytes[at]! ^ 0x01;
      });
      expectRefusedAsDifferent(await pgwardenAsPostgres(['wal', 'push', '--repo', repo, changed], primary.dataDir), name!);
    }
    expect((await readFile(key)).equals(before)).toBe(true);
  });

  it('refuses a file that is not the segment its name says', async () => {
    const [first, second] = archived;
    const renamed = await postgresDir('renamed');
    await copyForPostgres(join(copies, second!), join(renamed, first!));
    const run = await pgwardenAsPostgres(['wal', 'push', '--repo', repo, join(renamed, first!)], primary.dataDir);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`refused: ${first} is not the segment its name says: its first page is at WAL position`);
  });

  it('refuses a push from a second cluster into the same archive (rule 4)', async () => {
    const other = await createPrimary({ name: 'wal-intruder', archiveCommand: `${process.execPath} ${BIN} wal push --repo ${repo} %p` });
    cleanups.push(() => other.destroy());
    const otherId = await systemIdentifier(other);
    const name = await switchWal(other);
    await waitFor('the second cluster\'s archiver to fail', async () => {
      const [row] = await other.sql('select failed_count, last_failed_wal, archived_count from pg_stat_archiver');
      expect(Number(row?.['archived_count'])).toBe(0);
      return Number(row?.['failed_count']) > 0 && row?.['last_failed_wal'] === name;
    });
    const run = await pgwardenAsPostgres(['wal', 'push', '--repo', repo, `pg_wal/${name}`], other.dataDir);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`refused: the archive in local ${repo} belongs to the cluster with system identifier ${await systemIdentifier(primary)}, but this WAL was written by system identifier ${otherId}`);
    // Nothing of the intruder's was stored: every archived object still names the first cluster.
    for (const file of (await filesUnder(repo)).filter((f) => f.startsWith('wal/'))) {
      expect(await readFile(join(repo, file), 'latin1')).not.toContain(otherId);
    }
    await other.destroy();
  });
});

describe('an encrypted archive', () => {
  it('stores gzip then encrypted objects, and fetch needs the key: none or a wrong one is fatal (126)', async () => {
    const [name] = archived;
    const sealed = await postgresDir('sealed');
    const keys = await postgresDir('keys');
    for (const id of ['k1', 'other']) {
      await writeFile(join(keys, `${id}.key`), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
      await chown(join(keys, `${id}.key`), ...postgresIds);
    }
    const push = await pgwardenAsPostgres(['wal', 'push', '--repo', sealed, '--compression', 'gzip', '--key', `k1=${join(keys, 'k1.key')}`, join(copies, name!)], primary.dataDir);
    expect(push, push.stderr).toMatchObject({ code: 0, stderr: '' });
    const key = `wal/00000001/${name}.gz.enc`;
    expect(await filesUnder(sealed)).toContain(key);
    const stored = await readFile(join(sealed, key));
    expect(stored.subarray(stored.indexOf(0x0a) + 1, stored.indexOf(0x0a) + 9).toString('latin1')).toBe('PGWENC01');

    const out = join(sealed, 'RECOVERYXLOG');
    const keyless = await pgwardenAsPostgres(['wal', 'fetch', '--repo', sealed, name!, out], sealed);
    expect(keyless.code).toBe(126);
    expect(keyless.stderr).toContain('is encrypted and no key is configured');
    const wrong = await pgwardenAsPostgres(['wal', 'fetch', '--repo', sealed, '--key', `other=${join(keys, 'other.key')}`, name!, out], sealed);
    expect(wrong.code).toBe(126);
    expect((await readdir(sealed)).filter((file) => file.startsWith('RECOVERYXLOG'))).toEqual([]);
    const right = await pgwardenAsPostgres(['wal', 'fetch', '--repo', sealed, '--key', `other=${join(keys, 'other.key')}`, '--key', `k1=${join(keys, 'k1.key')}`, name!, out], sealed);
    expect(right, right.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((await readFile(out)).equals(await readFile(join(copies, name!)))).toBe(true);

    // A copy that differs after the switch is compared with the decrypted stored copy; without the
    // key nothing can be compared, and it is refused as different.
    const end = switchEnds.get(name!)!;
    const otherTail = await alteredCopy(name!, 'sealed-tail', (bytes) => { bytes.fill(0xa5, end, end + 8192); });
    const tailWithKey = await pgwardenAsPostgres(['wal', 'push', '--repo', sealed, '--key', `k1=${join(keys, 'k1.key')}`, otherTail], primary.dataDir);
    expect(tailWithKey, tailWithKey.stderr).toMatchObject({ code: 0, stderr: '' });
    const tailKeyless = await pgwardenAsPostgres(['wal', 'push', '--repo', sealed, otherTail], primary.dataDir);
    expectRefusedAsDifferent(tailKeyless, name!);
    expect((await readFile(join(sealed, key))).equals(stored)).toBe(true);
    // Keys are named on the command line by where they live, and never printed.
    const keyText = (await readFile(join(keys, 'k1.key'), 'utf8')).trim();
    for (const run of [push, keyless, wrong, right, tailWithKey, tailKeyless]) expect(run.stderr).not.toContain(keyText);
  });
});

describe('a push killed halfway through its upload', () => {
  it('leaves no object under the final name, and the retry succeeds (rule 2)', async () => {
    const [name] = archived;
    const fresh = await postgresDir('killed');
    const final = `wal/00000001/${name}.zst`;
    const child = spawn('runuser', ['-u', 'postgres', '--', 'env', 'PGWARDEN_TEST_WAL_PUSH_STALL=1', process.execPath, BIN, 'wal', 'push', '--repo', fresh, join(copies, name!)], {
      cwd: primary.dataDir, stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((done) => child.once('exit', (_code, signal) => done(signal)));
    // The upload has begun: a temporary file holding part of the object exists somewhere in the repository.
    const partial = await waitFor('the stalled upload to write part of the object', async () => {
      for (const file of await filesUnder(fresh)) {
        if (file.includes(name!) && (await stat(join(fresh, file))).size > 0) return file;
      }
      return undefined;
    });
    expect(partial).not.toBe(final);
    // Kill the node process itself (runuser would not pass SIGKILL on); the fresh repository path is unique to it.
    const { stdout } = await execFileAsync('pgrep', ['-f', `${BIN} wal push --repo ${fresh} `]);
    for (const pid of stdout.trim().split('\n')) process.kill(Number(pid), 'SIGKILL');
    await exited;
    expect(await filesUnder(fresh)).not.toContain(final);
    const fetch = await pgwardenAsPostgres(['wal', 'fetch', '--repo', fresh, name!, join(fresh, 'out')], fresh);
    expect(fetch.code).toBe(1);

    const retry = await pgwardenAsPostgres(['wal', 'push', '--repo', fresh, join(copies, name!)], primary.dataDir);
    expect(retry, retry.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(await filesUnder(fresh)).toContain(final);
    const back = await pgwardenAsPostgres(['wal', 'fetch', '--repo', fresh, name!, join(fresh, 'out')], fresh);
    expect(back.code).toBe(0);
    expect((await readFile(join(fresh, 'out'))).equals(await readFile(join(copies, name!)))).toBe(true);
  });
});

describe('wal fetch as restore_command', () => {
  it('exits 1 for a segment or history file the archive does not have', async () => {
    const out = await postgresDir('missing');
    const last = archived.at(-1)!;
    const next = `${last.slice(0, 16)}${(Number.parseInt(last.slice(16), 16) + 0x10).toString(16).toUpperCase().padStart(8, '0')}`;
    for (const name of [next, '00000002.history']) {
      const run = await pgwardenAsPostgres(['wal', 'fetch', '--repo', repo, name, join(out, 'RECOVERYXLOG')], out);
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(`pgwarden: wal fetch: ${name} is not in the archive (local ${repo})\n`);
    }
    expect(await readdir(out)).toEqual([]);
  });

  it('exits 126 (recovery stops) for a wrong --repo, never 1', async () => {
    const empty = await postgresDir('not-a-repo');
    const unmounted = await pgwardenAsPostgres(['wal', 'fetch', '--repo', join(empty, 'unmounted'), archived[0]!, join(empty, 'RECOVERYXLOG')], empty);
    expect(unmounted.code).toBe(126);
    expect(unmounted.stderr).toContain('the repository directory does not exist');
    const notAnArchive = await pgwardenAsPostgres(['wal', 'fetch', '--repo', empty, archived[0]!, join(empty, 'RECOVERYXLOG')], empty);
    expect(notAnArchive.code).toBe(126);
    expect(notAnArchive.stderr).toContain('holds no WAL archive (no archive.json): recovery stops here');
    expect(await readdir(empty)).toEqual([]);
  });

  it('exits 126 for a corrupted stored object and leaves no file at the destination (rule 5)', async () => {
    const [name] = archived;
    // Caught by the repository's checksum; and, with its checksum sidecar gone too, by pgwarden's own.
    for (const dropSidecar of [false, true]) {
      const damaged = await postgresDir('damaged');
      await cp(repo, damaged, { recursive: true });
      const object = join(damaged, 'wal', '00000001', `${name}.zst`);
      const bytes = await readFile(object);
      bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
      await writeFile(object, bytes);
      if (dropSidecar) await rm(join(damaged, 'wal', '00000001', `.${name}.zst.sha256`));
      await execFileAsync('chown', ['-R', 'postgres:postgres', damaged]);
      const out = await postgresDir('damaged-out');
      const run = await pgwardenAsPostgres(['wal', 'fetch', '--repo', damaged, name!, join(out, 'RECOVERYXLOG')], out);
      expect(run.code, run.stderr).toBe(126);
      expect(run.stderr).toMatch(new RegExp(`^pgwarden: wal fetch ${name} failed, so recovery stops: `));
      expect(await readdir(out)).toEqual([]);
    }
  });

  it('a standby restored from a base backup replays the archived WAL through restore_command', async () => {
    const base = await postgresDir('standby');
    const dataDir = join(base, 'data');
    // No WAL in the backup (-X none): everything after its start must come from the archive.
    await execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_basebackup'), '-h', primary.host, '-p', String(primary.port), '-U', 'postgres', '-D', dataDir, '-X', 'none', '-c', 'fast', '--no-sync']);
    // The backup's label file reaches the archive too; it has no page header, so its cluster comes from pg_control.
    await waitFor('the backup history file to be archived', async () => (await filesUnder(repo)).some((file) => /^wal\/00000001\/[0-9A-F]{24}\.[0-9A-F]{8}\.backup\.zst$/.test(file)));
    await primary.sql("insert into t select g, 'after the backup' from generate_series(100000, 100499) g");
    const name = await switchWal(primary);
    await waitArchived(primary, name);

    const port = await freePort();
    const conf = [
      `port = ${port}`, `unix_socket_directories = '${base}'`, "listen_addresses = '127.0.0.1'", 'archive_mode = off', "primary_conninfo = ''",
      `restore_command = '${process.execPath} ${BIN} wal fetch --repo ${repo} %f %p'`,
    ];
    await writeFile(join(dataDir, 'postgresql.conf'), `\n${conf.join('\n')}\n`, { flag: 'a' });
    await writeFile(join(dataDir, 'standby.signal'), '');
    const log = join(base, 'log');
    const pgCtl = (...args: string[]) => execFileAsync('runuser', ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl'), '-D', dataDir, ...args]);
    cleanups.push(() => pgCtl('stop', '-m', 'immediate', '-w').then(() => undefined, () => undefined));
    await pgCtl('start', '-l', log, '-w', '-t', '60');

    const { default: pg } = await import('pg');
    const count = async (): Promise<number> => {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await client.connect();
      try {
        return Number((await client.query("select count(*) as n from t where note = 'after the backup'")).rows[0].n);
      } finally {
        await client.end();
      }
    };
    await waitFor('the standby to replay the archived rows', async () => (await count()) === 500);
    expect(await readFile(log, 'utf8')).toMatch(new RegExp(`restored log file "${name}" from archive`));
    await pgCtl('stop', '-m', 'fast', '-w');
  });
});
