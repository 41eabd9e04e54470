// One repository object per WAL name, whatever the compression (DESIGN §7 rules 1, 2 and 4): a
// real cluster whose archive_command is `pgwarden wal push --compression zstd`, pushes of the same
// names with gzip (the same bytes: archived already; other bytes: refused, repository unchanged), a
// segment stored first with gzip before the server's own push, two pushes with different settings
// racing on one name (held at their store by a gate around the real local repository, so that each
// interleaving is produced on purpose), `pgwarden verify` and `wal fetch` on a name stored twice by
// an older version, and a real WalReceiver storing gzip next to archive_command storing zstd.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { chown, cp, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalRepository } from '../../src/backup/repository/local.js';
import type { PutOptions, Repository, StoredObject } from '../../src/backup/types.js';
import { recoveryWindow } from '../../src/backup/window.js';
import { readCatalog } from '../../src/backup/catalog.js';
import { fetchWal } from '../../src/backup/wal/fetch.js';
import { pushWal, type WalPushResult } from '../../src/backup/wal/push.js';
import { PostgresScratch, pgwardenAsPostgres, pgwardenBin, type Run } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { startReceiver, type ReceiverProcess } from '../support/wal-receiver.js';

const execFileAsync = promisify(execFile);
const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const TIMELINE_DIR = join('wal', '00000001');
const scratch = new PostgresScratch('wal-claim');

let primary: TestCluster;
let repo: string;
/** Copies of segments taken from pg_wal, owned by postgres. */
let copies: string;
/** A FIFO that, while it exists, holds archive_command until the test writes to it. */
let gate: string;
/** The first segment, archived by the server with zstd, and where its switch record ends. */
let first: { name: string; end: number };
const rootDirs: string[] = [];

/** Writes a little WAL and switches; the segment closed and where its switch record ends. */
async function writeAndSwitch(): Promise<{ name: string; end: number }> {
  await primary.sql("insert into t select g, md5(g::text) from generate_series(1, 500) g");
  const [row] = await primary.sql('select file_name, file_offset from pg_walfile_name_offset(pg_switch_wal())');
  return { name: String(row?.['file_name']), end: Number(row?.['file_offset']) };
}

async function archiver(): Promise<{ lastArchived: string; failed: number }> {
  const [row] = await primary.sql('select last_archived_wal, failed_count from pg_stat_archiver');
  const last = row?.['last_archived_wal'];
  return { lastArchived: typeof last === 'string' ? last : '', failed: Number(row?.['failed_count']) };
}

async function waitArchived(name: string): Promise<void> {
  await waitFor(`archive_command to archive ${name}`, async () => {
    const stats = await archiver();
    if (stats.failed > 0) throw new Error(`archiving failed: ${JSON.stringify(stats)}`);
    return stats.lastArchived >= name;
  }, { timeoutMs: 45_000 });
}

/** The objects of one WAL name in a repository directory (file names, sorted; no sidecars or temporary files). */
async function objectsOf(dir: string, name: string): Promise<string[]> {
  return (await readdir(join(dir, TIMELINE_DIR))).filter((file) => file.startsWith(`${name}.`) && !file.startsWith('.')).sort();
}

/** Every visible file of a repository with its bytes, to show that a refused push changed nothing. */
async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = new Map<string, Buffer>();
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files.set(path.slice(dir.length + 1), await readFile(path));
  }
  return files;
}

/** A copy of a segment in pg_wal (taken before it can be recycled), owned by postgres. */
async function copySegment(name: string): Promise<string> {
  const to = join(copies, name);
  await cp(join(primary.dataDir, 'pg_wal', name), to);
  await chown(to, ...(await scratch.owner()));
  return to;
}

/** A copy of a saved segment with `change` applied, owned by postgres, in a directory of its own. */
async function alteredCopy(name: string, label: string, change: (bytes: Buffer) => void): Promise<string> {
  const dir = await scratch.dir(label);
  const bytes = await readFile(join(copies, name));
  change(bytes);
  await writeFile(join(dir, name), bytes);
  await chown(join(dir, name), ...(await scratch.owner()));
  return join(dir, name);
}

function push(args: readonly string[]): Promise<Run> {
  return pgwardenAsPostgres(['wal', 'push', '--repo', repo, ...args], { cwd: primary.dataDir });
}

async function fetchAsPostgres(name: string, from = repo): Promise<{ run: Run; bytes: Buffer | undefined }> {
  const out = await scratch.dir('fetched');
  const run = await pgwardenAsPostgres(['wal', 'fetch', '--repo', from, name, join(out, 'RECOVERYXLOG')], { cwd: out });
  const bytes = await readFile(join(out, 'RECOVERYXLOG')).catch(() => undefined);
  return { run, bytes };
}

beforeAll(async () => {
  repo = await scratch.dir('repo');
  copies = await scratch.dir('copies');
  gate = join(await scratch.dir('gate'), 'gate');
  const pushCommand = `${process.execPath} ${pgwardenBin} wal push --repo ${repo} --compression zstd %p`;
  primary = await createPrimary({ name: 'wal-claim', archiveCommand: `if [ -p ${gate} ]; then cat ${gate} > /dev/null; fi; ${pushCommand}` });
  await primary.sql('create table t (id int, note text)');
  first = await writeAndSwitch();
  await waitArchived(first.name);
  await copySegment(first.name);
}, 120_000);

afterAll(async () => {
  // Let an archive_command still held by the gate go: opening a FIFO read-write never blocks.
  await open(gate, constants.O_RDWR).then((handle) => handle.close(), () => undefined);
  await rm(gate, { force: true });
  for (const receiver of receivers) await receiver.stop();
  await primary?.destroy();
  for (const dir of rootDirs) await rm(dir, { recursive: true, force: true });
  await scratch.cleanUp();
});

describe('wal push claims a WAL name whatever the compression', () => {
  it('accepts the same segment pushed again with gzip after the server stored it with zstd, and keeps one object', async () => {
    expect(await objectsOf(repo, first.name)).toEqual([`${first.name}.zst`]);
    const before = await snapshot(repo);
    const again = await push(['--compression', 'gzip', join(copies, first.name)]);
    expect(again, again.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(await objectsOf(repo, first.name)).toEqual([`${first.name}.zst`]);
    expect(await snapshot(repo)).toEqual(before);
  });

  it('refuses other bytes under that name with gzip, naming the stored object, and leaves the repository unchanged', async () => {
    const before = await snapshot(repo);
    const middle = Math.floor(first.end / 2);
    const forged = await alteredCopy(first.name, 'forged', (bytes) => { bytes[middle] = (bytes[middle]! + 1) % 256; });
    const run = await push(['--compression', 'gzip', forged]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`refused: ${first.name} is archived already with different contents (archived as wal/00000001/${first.name}.zst:`);
    expect(run.stderr).toContain('an archived name is never overwritten; fix: ');
    expect(await snapshot(repo)).toEqual(before);
    const { run: fetched, bytes } = await fetchAsPostgres(first.name);
    expect(fetched, fetched.stderr).toMatchObject({ code: 0 });
    expect(bytes?.equals(await readFile(join(copies, first.name)))).toBe(true);
  });

  it('lets archive_command (zstd) count a segment stored first with gzip as archived, and fetch reads it', async () => {
    // Hold archive_command, so that the gzip copy (what a receiver with other settings stores) is first.
    await execFileAsync('mkfifo', ['-m', '0644', gate]);
    const { name } = await writeAndSwitch();
    const copy = await copySegment(name);
    const stored = await push(['--compression', 'gzip', copy]);
    expect(stored, stored.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(await objectsOf(repo, name)).toEqual([`${name}.gz`]);
    const object = await readFile(join(repo, TIMELINE_DIR, `${name}.gz`));
    expect((await archiver()).lastArchived < name).toBe(true);

    await writeFile(gate, '');
    await rm(gate);
    await waitArchived(name);
    expect((await archiver()).failed).toBe(0);
    expect(await objectsOf(repo, name)).toEqual([`${name}.gz`]);
    expect((await readFile(join(repo, TIMELINE_DIR, `${name}.gz`))).equals(object)).toBe(true);

    for (const [segment, path] of [[name, copy], [first.name, join(copies, first.name)]] as const) {
      const { run, bytes } = await fetchAsPostgres(segment);
      expect(run, run.stderr).toMatchObject({ code: 0 });
      expect(bytes?.equals(await readFile(path))).toBe(true);
    }
  });
});

/**
 * The real local repository, with every put held until `gate` resolves; `arrived` resolves when
 * the first put comes in (the push has listed the name and found it free).
 */
class HeldRepository implements Repository {
  readonly description: string;
  readonly arrived: Promise<void>;
  private arrive!: () => void;

  constructor(private readonly inner: LocalRepository, private readonly gate: Promise<void>) {
    this.description = inner.description;
    this.arrived = new Promise((done) => { this.arrive = done; });
  }

  async put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<StoredObject> {
    if (key.startsWith('wal/')) {
      this.arrive();
      await this.gate;
    }
    return this.inner.put(key, body, options);
  }

  get(key: string, expectedSha256?: string): Promise<Readable> {
    return this.inner.get(key, expectedSha256);
  }

  head(key: string): Promise<StoredObject | undefined> {
    return this.inner.head(key);
  }

  list(prefix: string): AsyncIterable<StoredObject> {
    return this.inner.list(prefix);
  }

  delete(keys: readonly string[]): Promise<void> {
    return this.inner.delete(keys);
  }
}

/** A promise and its resolver. */
function opening(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((done) => { open = done; });
  return { promise, open };
}

describe('two pushes with different compressions racing on one name', () => {
  let segment: string;
  let dataDirectory: string;

  beforeAll(async () => {
    segment = join(copies, first.name);
    dataDirectory = await mkdtemp(join(tmpdir(), 'pgwarden-wal-claim-nodata-'));
    rootDirs.push(dataDirectory);
  });

  async function freshRepository(): Promise<LocalRepository> {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-wal-claim-race-'));
    rootDirs.push(dir);
    return new LocalRepository(dir);
  }

  async function fetchBack(repository: LocalRepository): Promise<Buffer> {
    const out = await mkdtemp(join(tmpdir(), 'pgwarden-wal-claim-out-'));
    rootDirs.push(out);
    const result = await fetchWal(first.name, join(out, 'RECOVERYXLOG'), { repository, dataDirectory });
    expect(result.outcome).toBe('restored');
    return readFile(join(out, 'RECOVERYXLOG'));
  }

  it('store one object between them when both found the name free and store at the same moment', async () => {
    const repository = await freshRepository();
    const both = opening();
    const zstd = new HeldRepository(repository, both.promise);
    const gzip = new HeldRepository(repository, both.promise);
    const pushes = [
      pushWal(segment, { repository: zstd, compression: 'zstd', dataDirectory }),
      pushWal(segment, { repository: gzip, compression: 'gzip', dataDirectory }),
    ];
    await Promise.all([zstd.arrived, gzip.arrived]);
    both.open();
    const results = await Promise.all(pushes);
    expect(results.map((result) => result.name)).toEqual([first.name, first.name]);
    expect(await objectsOf(repository.root, first.name)).toEqual([`${first.name}.gz`]);
    // Which one lists first varies; whatever either reported, the smaller key is what stays.
    expect(results.map((result) => result.key)).toContain(`wal/00000001/${first.name}.gz`);
    expect((await fetchBack(repository)).equals(await readFile(segment))).toBe(true);
  });

  it('keep one object when the zstd push already reported success before the gzip push stored its copy', async () => {
    const repository = await freshRepository();
    const held = opening();
    const gzip = new HeldRepository(repository, held.promise);
    const late = pushWal(segment, { repository: gzip, compression: 'gzip', dataDirectory });
    await gzip.arrived;
    const early = await pushWal(segment, { repository, compression: 'zstd', dataDirectory });
    expect(early).toMatchObject({ outcome: 'stored', key: `wal/00000001/${first.name}.zst` });
    held.open();
    const result: WalPushResult = await late;
    // The smaller key stays: the gzip push keeps its copy and removes the zstd one, the same WAL.
    expect(result).toMatchObject({ outcome: 'stored', key: `wal/00000001/${first.name}.gz` });
    expect(result.note).toContain(`removed wal/00000001/${first.name}.zst`);
    expect(await objectsOf(repository.root, first.name)).toEqual([`${first.name}.gz`]);
    expect((await fetchBack(repository)).equals(await readFile(segment))).toBe(true);
  });

  it('keep one object when the gzip push already reported success before the zstd push stored its copy', async () => {
    const repository = await freshRepository();
    const held = opening();
    const zstd = new HeldRepository(repository, held.promise);
    const late = pushWal(segment, { repository: zstd, compression: 'zstd', dataDirectory });
    await zstd.arrived;
    const early = await pushWal(segment, { repository, compression: 'gzip', dataDirectory });
    expect(early).toMatchObject({ outcome: 'stored', key: `wal/00000001/${first.name}.gz` });
    const gzipObject = await readFile(join(repository.root, TIMELINE_DIR, `${first.name}.gz`));
    held.open();
    const result = await late;
    expect(result).toMatchObject({ outcome: 'already archived', key: `wal/00000001/${first.name}.gz` });
    expect(result.note).toContain(`removed wal/00000001/${first.name}.zst`);
    expect(await objectsOf(repository.root, first.name)).toEqual([`${first.name}.gz`]);
    expect((await readFile(join(repository.root, TIMELINE_DIR, `${first.name}.gz`))).equals(gzipObject)).toBe(true);
  });

  it('refuse the push whose copy holds other WAL than the one stored first, and take that copy back', async () => {
    const repository = await freshRepository();
    const held = opening();
    const zstd = new HeldRepository(repository, held.promise);
    const middle = Math.floor(first.end / 2);
    const forged = await alteredCopy(first.name, 'race-forged', (bytes) => { bytes[middle] = (bytes[middle]! + 1) % 256; });
    const late = pushWal(forged, { repository: zstd, compression: 'zstd', dataDirectory });
    await zstd.arrived;
    const early = await pushWal(segment, { repository, compression: 'gzip', dataDirectory });
    expect(early).toMatchObject({ outcome: 'stored' });
    held.open();
    await expect(late).rejects.toThrow(`refused: ${first.name} is archived already with different contents, stored at the same time by another push (archived as wal/00000001/${first.name}.gz:`);
    expect(await objectsOf(repository.root, first.name)).toEqual([`${first.name}.gz`]);
    expect((await fetchBack(repository)).equals(await readFile(segment))).toBe(true);
  });
});

describe('a name stored twice by an older version', () => {
  /** Stores `path` with gzip in a side repository and returns the object, as an older version left it. */
  async function gzipObjectOf(path: string, label: string): Promise<Buffer> {
    const side = await scratch.dir(label);
    const run = await pgwardenAsPostgres(['wal', 'push', '--repo', side, '--compression', 'gzip', path], { cwd: primary.dataDir });
    expect(run, run.stderr).toMatchObject({ code: 0 });
    const name = path.slice(path.lastIndexOf('/') + 1);
    return readFile(join(side, TIMELINE_DIR, `${name}.gz`));
  }

  async function placeBeside(name: string, object: Buffer): Promise<string> {
    const path = join(repo, TIMELINE_DIR, `${name}.gz`);
    await writeFile(path, object, { mode: 0o640 });
    await chown(path, ...(await scratch.owner()));
    return path;
  }

  let backupId: string;

  beforeAll(async () => {
    const run = await pgwardenAsPostgres(['backup', '--dsn', `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`, '--repo', repo, '--fast'], { timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    backupId = run.stdout.trim();
  }, 150_000);

  it('counts the segment once in the recovery window, and verify warns naming both keys without failing', async () => {
    const { name } = await writeAndSwitch();
    await waitArchived(name);
    const copy = await copySegment(name);
    expect(await objectsOf(repo, name)).toEqual([`${name}.zst`]);
    await placeBeside(name, await gzipObjectOf(copy, 'side-same'));
    expect(await objectsOf(repo, name)).toEqual([`${name}.gz`, `${name}.zst`]);

    const catalog = await readCatalog(new LocalRepository(repo));
    expect(catalog.wal.filter((wal) => wal.file.name === name)).toHaveLength(2);
    const window = recoveryWindow(catalog);
    const timeline = window.timelines.find((info) => info.timeline === 1);
    const segments = new Set(catalog.wal.filter((wal) => wal.file.kind === 'segment').map((wal) => wal.file.name));
    expect(timeline?.segments).toBe(segments.size);

    const verify = await pgwardenAsPostgres(['verify', backupId, '--repo', repo]);
    expect(verify.code, verify.stdout).toBe(0);
    expect(verify.stdout).toContain(`warning: WAL ${name} is stored under 2 keys (wal/00000001/${name}.gz and wal/00000001/${name}.zst), holding the same bytes; wal fetch reads wal/00000001/${name}.gz`);
    expect(verify.stdout).toContain('recovery window: ok');

    const { run, bytes } = await fetchAsPostgres(name);
    expect(run, run.stderr).toMatchObject({ code: 0 });
    expect(bytes?.equals(await readFile(copy))).toBe(true);

    // A push of the name (the archiver's retry) finds the same WAL twice and keeps the first key.
    const again = await push([copy]);
    expect(again, again.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(await objectsOf(repo, name)).toEqual([`${name}.gz`]);
    const tidy = await pgwardenAsPostgres(['verify', backupId, '--repo', repo]);
    expect(tidy, tidy.stderr).toMatchObject({ code: 0 });
    expect(tidy.stdout).not.toContain('warning:');
  });

  it('fails verify and stops recovery when the two copies hold different WAL', async () => {
    const { name, end } = await writeAndSwitch();
    await waitArchived(name);
    await copySegment(name);
    const middle = Math.floor(end / 2);
    const forged = await alteredCopy(name, 'dup-forged', (bytes) => { bytes[middle] = (bytes[middle]! + 1) % 256; });
    const placed = await placeBeside(name, await gzipObjectOf(forged, 'side-forged'));

    const verify = await pgwardenAsPostgres(['verify', backupId, '--repo', repo]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`WAL ${name} is stored under 2 keys (wal/00000001/${name}.gz and wal/00000001/${name}.zst) with different WAL in them`);

    const { run, bytes } = await fetchAsPostgres(name);
    expect(run.code).toBe(126);
    expect(run.stderr).toContain(`${name} is stored twice with different WAL, as wal/00000001/${name}.gz and wal/00000001/${name}.zst`);
    expect(bytes).toBeUndefined();
    // The archiver's retry of the real segment is refused too: the name is contested.
    const retry = await push([join(copies, name)]);
    expect(retry.code).toBe(1);
    expect(await objectsOf(repo, name)).toEqual([`${name}.gz`, `${name}.zst`]);
    await rm(placed);
  });
});

const receivers: ReceiverProcess[] = [];

describe('a WalReceiver with gzip and archive_command with zstd in one repository', () => {
  it('store every switched segment under one key, and neither side fails', async () => {
    const spool = join(await scratch.dir('spool'), 'spool');
    await execFileAsync('runuser', ['-u', 'postgres', '--', 'mkdir', '-m', '0700', spool]);
    // The receiver stores gzip; the server's archive_command stores zstd.
    const receiver = startReceiver({ dsn: primary.dsn(), spool, repo, pgBin: PG_BIN, cluster: 'Claim Test', compression: 'gzip' });
    const { events } = receiver;
    receivers.push(receiver);
    await waitFor('the receiver to start pg_receivewal', async () => events.some((event) => event.type === 'started'));
    await waitFor('the slot to be active', async () => {
      const [row] = await primary.sql("select active from pg_replication_slots where slot_name = 'pgwarden_claim_test'");
      return row?.['active'] === true;
    });

    const names: string[] = [];
    for (let round = 0; round < 3; round++) names.push((await writeAndSwitch()).name);
    await waitFor('the receiver to push every segment', async () => names.every((name) => events.some((event) => event.type === 'pushed' && event.name === name)));
    await waitArchived(names.at(-1)!);
    expect(events.filter((event) => event.type === 'push-failed')).toEqual([]);
    expect((await archiver()).failed).toBe(0);
    for (const name of names) expect(await objectsOf(repo, name)).toHaveLength(1);
    await receiver.stop();
  });
});
