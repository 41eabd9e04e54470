/**
 * Physical backups (issue 5 item 2, DESIGN §7 rule 7): pg_basebackup writes the data directory as
 * one tar stream to its stdout (`-D - -F tar`), which pgwarden cuts into parts and stores as
 * `backups/<id>/pgdata.tar.<NNNNNN>.<ext>[.enc]`, encrypted when a keyring is given. Two layouts
 * (the manifest's `layout`; docs/backups.md says how to rebuild a data directory from each):
 *
 * - 'stream' (zstd from PostgreSQL 15 on, the default there): the server compresses the tar itself
 *   (`--compress=server-zstd:level=3,workers=2`), so only the compressed bytes cross the network
 *   and Node; the parts are consecutive 64 MiB slices of that one zstd stream (pgwarden never sees
 *   the tar: its size is pg_basebackup's count, to the kB; `pgwarden verify` decodes the stream).
 * - 'parts' (gzip, none, zstd on older servers or with compressOn 'client'): each 64 MiB slice of
 *   the tar is compressed here on its own (zstd through the zstd program, or gzip).
 * Two parts are in flight at a time, so pg_basebackup never waits for a part to be flushed.
 *
 * The WAL: with a temporary replication slot held by pgwarden's session (so the server keeps it),
 * `-X fetch` copies the WAL from start to stop into the tar and the server does not wait for its
 * archiver in pg_backup_stop; without a free slot, `-X none` and PostgreSQL waits there. Either
 * way the backup counts only once every WAL file from its start to its stop is in the archive
 * (`pgwarden wal push`), every stored object has been read back against its checksum, and then
 * `manifest.json` is written last. Any failure deletes what was stored and leaves no manifest.
 *
 * From a primary waiting in pg_backup_stop, a watcher reads pg_stat_progress_basebackup and gives
 * up after the archive timeout when the archiver does not get there. From a standby, the primary
 * archives: pgwarden polls the repository. A standby promoted during the backup makes it void.
 *
 * A cluster with tablespaces besides pg_default and pg_global cannot stream to stdout (pg_basebackup's
 * limit): pg_basebackup writes base.tar and one <oid>.tar per tablespace (with the same
 * compression, WAL and slot choices: base.tar.zst… in the 'stream' layout) into a private staging
 * directory (mode 0700, under TMPDIR or `stagingDir`), removed on every path; each tar is then
 * stored in parts of its own and the manifest records each tablespace (src/backup/tablespaces.ts).
 * That needs local disk for one copy of the backup (compressed when the server compresses).
 */
import { spawn } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
import type { ConnectionSpec } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError, messageOf } from '../errors.js';
import { encryptStream } from './crypto.js';
import { openStaging, tablespacePartKey, type Staging } from './tablespaces.js';
import type { BackupManifest, BackupTablespace, Keyring, Repository } from './types.js';
import { backupPrefix, checkObject, childStream, manifestKey, Meter, missingWal, partKey, walFilesBetween } from './verify.js';
import { parseWalObjectKey, readArchiveInfo, WAL_PREFIX } from './wal/archive.js';
import { zstdInstalled } from './wal/compress.js';
import { segmentFileName } from './wal/segment.js';
import { libpqEnv } from '../db/libpq-env.js';

/** Tar bytes per stored part unless told otherwise. */
export const DEFAULT_PART_BYTES = 64 * 1024 * 1024;
/** How long the WAL from start to stop may take to reach the archive. */
export const DEFAULT_ARCHIVE_TIMEOUT_MS = 5 * 60 * 1000;
/** The zstd level of backup parts. */
export const ZSTD_LEVEL = 3;

export type BackupCompression = BackupManifest['compression'];

export interface BackupOptions {
  readonly connection: ConnectionSpec;
  /** Names recorded in the manifest. */
  readonly cluster: string;
  readonly node: string;
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  readonly compression: BackupCompression;
  /** An immediate checkpoint (--checkpoint=fast) instead of a spread one. */
  readonly fast: boolean;
  readonly partBytes?: number;
  readonly archiveTimeoutMs?: number;
  /**
   * Where the tar is compressed (zstd only): 'server' (the default on PostgreSQL 15+: the server
   * compresses with 2 workers, the 'stream' layout) or 'client' (each part here, the 'parts' layout).
   */
  readonly compressOn?: 'server' | 'client';
  /** Where a cluster with tablespaces is staged on local disk (default: TMPDIR). */
  readonly stagingDir?: string;
  /** Where pg_basebackup is: default /usr/lib/postgresql/<server major>/bin, else the PATH. */
  readonly pgBin?: string;
  /** Progress lines (for stderr). */
  readonly progress?: (line: string) => void;
  readonly now?: () => Date;
}

/** A backup that did not complete: nothing of it is left in the repository. */
export class BackupFailedError extends UserError {}

/** Where the backup starts, from pg_basebackup's -v output (the same as backup_label's START WAL LOCATION). */
interface StartPoint {
  readonly startLsn: string;
  readonly timeline: number;
}

/** The id of a backup started at `at`: sortable, unique to the second. */
export function backupId(at: Date): string {
  return `${at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-full`;
}

/** Reads "write-ahead log start point: 0/2E000028 on timeline 1" from pg_basebackup -v's output. */
export function parseStartPoint(text: string): StartPoint | undefined {
  const match = /write-ahead log start point: ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/.exec(text);
  return match?.[1] === undefined || match[2] === undefined ? undefined : { startLsn: match[1], timeline: Number(match[2]) };
}

/** The data pg_basebackup -P counted at its end ("805473/805473 kB (100%)"), in bytes (to the kB). */
export function progressBytes(text: string): number | undefined {
  const counts = [...text.matchAll(/(\d+)\/\d+ kB \(/g)];
  const last = counts[counts.length - 1]?.[1];
  return last === undefined ? undefined : Number(last) * 1024;
}

/** Reads "write-ahead log end point: 0/2E000138" (pg_backup_stop's stop LSN) from pg_basebackup -v's output. */
export function parseEndPoint(text: string): string | undefined {
  return /write-ahead log end point: ([0-9A-F]+\/[0-9A-F]+)/.exec(text)?.[1];
}

/** An LSN "X/Y" as a number of bytes. */
export function lsnToBigInt(lsn: string): bigint {
  const [high = '', low = ''] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

/** The WAL file holding the last byte before `lsn` (PostgreSQL's XLByteToPrevSeg): the last one a backup stopping at `lsn` needs. */
export function stopWalFile(timeline: number, lsn: string, segmentSize: number): string {
  return segmentFileName(timeline, (lsnToBigInt(lsn) - 1n) / BigInt(segmentSize), segmentSize);
}

type ObjectEntry = BackupManifest['objects'][number];

/**
 * One part on its way to the repository: bytes in (tar bytes, or a slice of the server's compressed
 * stream), compressed here when `compression` says so, maybe encrypted, stored. `original` measures
 * what came in: the object's originalSize and originalSha256.
 */
class Part {
  readonly input = new PassThrough({ highWaterMark: 1024 * 1024 });
  readonly original = new Meter();
  bytes = 0;
  readonly done: Promise<ObjectEntry>;

  constructor(readonly key: string, repository: Repository, compression: BackupCompression, keyring: Keyring | undefined) {
    let body: Readable = this.input.pipe(this.original);
    const waits: Promise<unknown>[] = [];
    const fail = (error: unknown): void => { this.input.destroy(error instanceof Error ? error : new Error(String(error))); };
    if (compression === 'zstd') {
      const { stream, exited } = childStream('zstd', [`-${ZSTD_LEVEL}`, '-q', '-c', '--no-progress', '-T2']);
      body = body.pipe(stream);
      waits.push(exited);
    } else if (compression === 'gzip') {
      const gzip = createGzip({ level: 6 });
      gzip.on('error', fail);
      body = body.pipe(gzip);
    }
    if (keyring !== undefined) {
      const encrypt = encryptStream(keyring);
      encrypt.on('error', fail);
      body = body.pipe(encrypt);
    }
    this.done = Promise.all([repository.put(key, body, { ifExists: 'fail' }), ...waits]).then(([stored]) => ({
      key,
      size: stored.size,
      sha256: stored.sha256,
      originalSize: this.original.bytes,
      originalSha256: this.original.digest(),
    }));
    this.done.catch(() => undefined);
  }

  /** Writes with backpressure; rejects when the part's pipeline failed. */
  async write(chunk: Buffer): Promise<void> {
    this.bytes += chunk.length;
    if (this.input.write(chunk)) return;
    await Promise.race([new Promise((resolve) => this.input.once('drain', resolve)), this.done]);
  }

  async finish(): Promise<ObjectEntry> {
    this.input.end();
    return this.done;
  }
}

/**
 * Cuts `input` into parts of `partBytes` made by `newPart(n)` (n from 1), two in flight; resolves
 * with the stored objects in order, or rejects once the parts in flight have settled.
 */
async function storeInParts(input: AsyncIterable<Buffer>, partBytes: number, newPart: (index: number) => Part): Promise<ObjectEntry[]> {
  let part: Part | undefined;
  let started = 0;
  const inFlight: Promise<ObjectEntry>[] = [];
  const objects: ObjectEntry[] = [];
  try {
    for await (const data of input) {
      let chunk = data;
      while (chunk.length > 0) {
        part ??= newPart(++started);
        const room = partBytes - part.bytes;
        const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
        chunk = chunk.subarray(piece.length);
        await part.write(piece);
        if (part.bytes >= partBytes) {
          inFlight.push(part.finish());
          part = undefined;
          // The next part starts at once; only the one before the previous is awaited.
          if (inFlight.length >= PARTS_IN_FLIGHT) objects.push(await (inFlight.shift() as Promise<ObjectEntry>));
        }
      }
    }
    if (part !== undefined) inFlight.push(part.finish());
    for (const pending of inFlight.splice(0)) objects.push(await pending);
    return objects;
  } catch (error) {
    await Promise.allSettled(inFlight);
    throw error;
  }
}

/**
 * Stores the tars pg_basebackup wrote into `dir` (base.tar and <oid>.tar, with .zst in the 'stream'
 * layout): each in parts of its own. Refuses any other set of files (a tablespace created or
 * dropped during the backup).
 */
async function storeStaged(
  dir: string, tablespaces: readonly Omit<BackupTablespace, 'objects'>[], layout: 'stream' | 'parts', partBytes: number,
  newPart: (tablespace: Omit<BackupTablespace, 'objects'> | undefined, index: number) => Part, progress: (line: string) => void,
): Promise<{ base: ObjectEntry[]; tablespaces: Map<number, ObjectEntry[]> }> {
  const suffix = layout === 'stream' ? '.tar.zst' : '.tar';
  const names = (await readdir(dir)).sort();
  const expected = ['base', ...tablespaces.map((tablespace) => String(tablespace.oid))].map((name) => `${name}${suffix}`).sort();
  if (names.join('/') !== expected.join('/')) {
    throw new BackupFailedError(`pg_basebackup wrote ${names.join(', ') || 'nothing'} into ${dir}, not ${expected.join(', ')}`, 'a tablespace was probably created or dropped during the backup: run it again');
  }
  const store = async (name: string, tablespace: Omit<BackupTablespace, 'objects'> | undefined): Promise<ObjectEntry[]> => {
    const path = join(dir, name);
    progress(`storing ${name} (${mib((await stat(path)).size)})${tablespace === undefined ? '' : ` of tablespace ${tablespace.name}`}`);
    return storeInParts(createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>, partBytes, (index) => newPart(tablespace, index));
  };
  const base = await store(`base${suffix}`, undefined);
  const stored = new Map<number, ObjectEntry[]>();
  for (const tablespace of tablespaces) stored.set(tablespace.oid, await store(`${tablespace.oid}${suffix}`, tablespace));
  return { base, tablespaces: stored };
}

function basebackupPath(pgBin: string | undefined, major: number): string {
  const dir = pgBin ?? `/usr/lib/postgresql/${major}/bin`;
  const path = join(dir, 'pg_basebackup');
  return existsSync(path) || pgBin !== undefined ? path : 'pg_basebackup';
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

interface ServerFacts {
  readonly version: number;
  readonly standby: boolean;
  readonly systemIdentifier: string;
  readonly timeline: number;
  readonly segmentSize: number;
  readonly totalBytes: number;
  /** Besides pg_default and pg_global, by oid. */
  readonly tablespaces: readonly Omit<BackupTablespace, 'objects'>[];
  readonly archiveMode: string;
}

async function serverFacts(session: DbSession): Promise<ServerFacts> {
  const [row] = await session.query({
    text: `select current_setting('server_version_num')::int as version, pg_is_in_recovery() as standby,
      (select system_identifier::text from pg_control_system()) as sysid,
      (select timeline_id from pg_control_checkpoint()) as timeline,
      (select setting::bigint from pg_settings where name = 'wal_segment_size') as segsize,
      (select sum(pg_database_size(oid))::bigint from pg_database where datallowconn) as total,
      (select coalesce(json_agg(json_build_object('oid', oid, 'name', spcname, 'location', pg_tablespace_location(oid)) order by oid), '[]')
        from pg_tablespace where spcname not in ('pg_default', 'pg_global')) as tablespaces,
      current_setting('archive_mode') as archive_mode`,
  });
  if (row === undefined) throw new Error('the server returned no row');
  return {
    version: Number(row['version']),
    standby: row['standby'] === true,
    systemIdentifier: String(row['sysid']),
    timeline: Number(row['timeline']),
    segmentSize: Number(row['segsize']),
    totalBytes: Number(row['total']),
    tablespaces: (row['tablespaces'] as Record<string, unknown>[]).map((t) => ({ oid: Number(t['oid']), name: String(t['name']), location: String(t['location']) })),
    archiveMode: String(row['archive_mode']),
  };
}

/** Why the archiver is not getting there, from pg_stat_archiver (a primary only). */
async function archiverStatus(session: DbSession): Promise<string> {
  try {
    const [row] = await session.query({ text: `select archived_count, last_archived_wal, failed_count, last_failed_wal, last_failed_time, current_setting('archive_command') as command from pg_stat_archiver` });
    if (row === undefined) return '';
    const failed = Number(row['failed_count']);
    return failed > 0
      ? `; the archiver has failed ${failed} times, last on ${String(row['last_failed_wal'])} at ${String(row['last_failed_time'])} (archive_command = '${String(row['command'])}'; see the server log)`
      : `; the archiver reports no failure (last archived: ${typeof row['last_archived_wal'] === 'string' ? row['last_archived_wal'] : 'none'})`;
  } catch {
    return '';
  }
}

/** Whether the archive's WAL is encrypted (its first archived file is): then a backup must be too. */
async function archiveEncrypted(repository: Repository): Promise<boolean> {
  for await (const object of repository.list(WAL_PREFIX)) {
    const parsed = parseWalObjectKey(object.key);
    if (parsed !== undefined) return parsed.encrypted;
  }
  return false;
}

/** How many parts may be on their way to the repository at once. */
const PARTS_IN_FLIGHT = 2;

/**
 * A temporary physical replication slot on pgwarden's session: the server keeps the WAL from now on
 * until the session ends, so `-X fetch` finds it at the end of a long backup. Resolves with false
 * (and the backup falls back to `-X none`) when no slot is free or the role may not create one.
 */
async function holdWal(session: DbSession, id: string): Promise<{ ok: true } | { ok: false; why: string }> {
  const slot = `pgwarden_backup_${id.toLowerCase().replace(/[^a-z0-9]/g, '_')}_${process.pid}`;
  try {
    await session.query({ text: 'select pg_create_physical_replication_slot($1, true, true)', values: [slot] });
    return { ok: true };
  } catch (error) {
    return { ok: false, why: messageOf(error) };
  }
}

/**
 * Takes a full physical backup into the repository; resolves with its manifest once the backup
 * counts (rule 7). On any failure, deletes what it stored and rejects (a BackupFailedError for the
 * causes a user can act on).
 */
export async function takeBackup(options: BackupOptions): Promise<BackupManifest> {
  const { repository, keyring, compression } = options;
  const now = options.now ?? (() => new Date());
  const progress = options.progress ?? (() => undefined);
  const partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
  const archiveTimeoutMs = options.archiveTimeoutMs ?? DEFAULT_ARCHIVE_TIMEOUT_MS;
  const startedAt = now();
  const id = backupId(startedAt);
  const application = `pgwarden-backup-${id}`;

  const archive = await readArchiveInfo(repository);
  if (archive === undefined) {
    throw new BackupFailedError(
      `${repository.description} holds no WAL archive (no archive.json): a backup without its WAL cannot be restored (rule 7)`,
      `set archive_mode = on and archive_command = 'pgwarden wal push %p --repo …' on the primary, and check that a WAL file reached the repository`,
    );
  }
  if (keyring === undefined && (await archiveEncrypted(repository))) {
    throw new BackupFailedError(
      `the WAL archive in ${repository.description} is encrypted, and a backup of it must be too (no key was given)`,
      'pass the archive\'s key with --key ID=FILE or --key-env ID=VAR (with --config: the cluster\'s backups.keys)',
    );
  }
  const session = await DbSession.open(options.connection, 'pgwarden-backup');
  const stored: string[] = [];
  let child: ReturnType<typeof spawn> | undefined;
  let staging: Staging | undefined;
  try {
    const facts = await serverFacts(session);
    if (facts.systemIdentifier !== archive.systemIdentifier) {
      throw new BackupFailedError(`the archive in ${repository.description} belongs to system identifier ${archive.systemIdentifier}, this server is ${facts.systemIdentifier}`, 'back up into the repository this cluster archives its WAL to');
    }
    if (!facts.standby && facts.archiveMode === 'off') {
      throw new BackupFailedError('archive_mode is off on this server, so the WAL a backup needs is never archived (rule 7)', "set archive_mode = on and archive_command = 'pgwarden wal push %p --repo …', then restart the server");
    }
    // Everything under backups/<id>/ is this run's from here on: a failure deletes it all.
    for await (const object of repository.list(backupPrefix(id))) {
      throw new BackupFailedError(`backup ${id} exists already (${object.key})`, 'wait a second and run it again');
    }
    if (compression === 'zstd' && !(await zstdInstalled())) {
      throw new BackupFailedError('the zstd program is not installed', 'apt-get install zstd, or pass --compression gzip');
    }
    const layout: 'stream' | 'parts' = compression === 'zstd' && facts.version >= 150000 && options.compressOn !== 'client' ? 'stream' : 'parts';
    const held = await holdWal(session, id);
    progress(`backup ${id}: from ${facts.standby ? 'standby' : 'primary'} ${options.node} (PostgreSQL ${Math.floor(facts.version / 10000)}), about ${mib(facts.totalBytes)}, ${compression}${layout === 'stream' ? ' (compressed by the server)' : ''}${keyring === undefined ? '' : `, encrypted with key ${keyring.current.id}`}`);
    if (!held.ok) progress(`backup ${id}: no temporary replication slot (${held.why}): the server waits for its archiver at the end of the backup`);

    // pg_basebackup, its tar stream cut into parts; with tablespaces, its tars staged on disk first.
    if (facts.tablespaces.length > 0) {
      staging = await openStaging(options.stagingDir ?? tmpdir(), id, () => child?.kill('SIGTERM'));
      progress(`backup ${id}: ${facts.tablespaces.length} tablespace(s) (${facts.tablespaces.map((t) => `${t.name} at ${t.location}`).join(', ')}): pg_basebackup writes its tars into ${staging.dir} first, one copy of the backup${layout === 'stream' ? ' compressed by the server' : ''}`);
    }
    const args = ['-D', staging?.dir ?? '-', '-F', 'tar', '-X', held.ok ? 'fetch' : 'none', `--checkpoint=${options.fast ? 'fast' : 'spread'}`, '--no-manifest', '-v', '-w'];
    if (layout === 'stream') args.push(`--compress=server-zstd:level=${ZSTD_LEVEL},workers=2`, '-P');
    child = spawn(basebackupPath(options.pgBin, Math.floor(facts.version / 10000)), args, { env: libpqEnv(options.connection, application), stdio: ['ignore', staging === undefined ? 'pipe' : 'ignore', 'pipe'] });
    const running = child;
    const errText: string[] = [];
    running.stderr?.on('data', (chunk: Buffer) => errText.push(chunk.toString('utf8')));
    const exited = new Promise<number | string>((resolve) => {
      running.on('error', (error) => resolve(messageOf(error)));
      running.on('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });

    // The watcher: progress, and a primary that waits too long for its archiver.
    let stopWatching = false;
    // Ends the watcher's wait at once when pg_basebackup is done (not up to 500 ms later).
    const watchStop = new AbortController();
    let watchFailure: BackupFailedError | undefined;
    const streamed = { done: 0, total: facts.totalBytes };
    const watcher = (async () => {
      let waitingSince: number | undefined;
      let lastReport = 0;
      while (!stopWatching) {
        await delay(500, undefined, { signal: watchStop.signal }).catch(() => undefined);
        if (stopWatching) break;
        let row: Record<string, unknown> | undefined;
        try {
          [row] = await session.query({ text: `select p.pid, p.phase, p.backup_streamed, p.backup_total from pg_stat_progress_basebackup p join pg_stat_activity a using (pid) where a.application_name = $1`, values: [application] });
        } catch {
          // A failed look is not a failed backup: the next one may work.
        }
        if (row !== undefined) {
          streamed.done = Number(row['backup_streamed'] ?? streamed.done);
          if (row['backup_total'] !== null && row['backup_total'] !== undefined) streamed.total = Number(row['backup_total']);
        }
        if (Date.now() - lastReport >= 2000) {
          lastReport = Date.now();
          const total = Math.max(streamed.total, streamed.done);
          progress(`backup ${id}: ${mib(streamed.done)} of about ${mib(total)}${total > 0 ? ` (${Math.min(99, Math.floor((streamed.done / total) * 100))}%)` : ''}`);
        }
        if (facts.standby || row === undefined) continue;
        if (row['phase'] === 'waiting for wal archiving to finish') {
          waitingSince ??= Date.now();
          if (Date.now() - waitingSince > archiveTimeoutMs) {
            watchFailure = new BackupFailedError(
              `the WAL archiver did not archive the backup's WAL within ${Math.round(archiveTimeoutMs / 1000)} s${await archiverStatus(session)}`,
              'fix archive_command (pgwarden wal push … into this repository), then run the backup again',
            );
            await session.query({ text: 'select pg_terminate_backend($1)', values: [row['pid']] }).catch(() => undefined);
            running.kill('SIGTERM');
            break;
          }
        } else waitingSince = undefined;
      }
    })();

    const objects: ObjectEntry[] = [];
    const newPart = (key: string): Part => {
      stored.push(key);
      return new Part(key, repository, layout === 'stream' ? 'none' : compression, keyring);
    };
    let streamError: unknown;
    if (staging === undefined) {
      try {
        if (running.stdout === null) throw new Error('pg_basebackup has no stdout');
        objects.push(...(await storeInParts(running.stdout as AsyncIterable<Buffer>, partBytes, (index) => newPart(partKey(id, index, compression, keyring !== undefined)))));
      } catch (error) {
        // pg_basebackup would block on a full pipe: stop it before waiting for it.
        streamError = error;
        running.kill('SIGTERM');
      }
    }
    const code = await exited;
    stopWatching = true;
    watchStop.abort();
    await watcher;
    if (watchFailure !== undefined) throw watchFailure;
    if (streamError !== undefined) throw streamError instanceof Error ? streamError : new Error(messageOf(streamError));
    const output = errText.join('');
    if (code !== 0) {
      const lines = output.split('\n').filter((line) => line.trim() !== '');
      const why = lines.filter((line) => /error|FATAL/.test(line)).join('; ') || lines.pop() || '';
      throw new BackupFailedError(`pg_basebackup failed (${typeof code === 'number' ? `exit ${code}` : code}): ${why}`, 'fix the cause it names (a replication connection needs a pg_hba.conf "replication" line and the REPLICATION privilege), then run the backup again');
    }
    const start = parseStartPoint(output);
    const endPoint = parseEndPoint(output);
    if (start === undefined || endPoint === undefined) throw new BackupFailedError(`pg_basebackup did not report its write-ahead log start and end points:\n${output.trim()}`, 'check the pg_basebackup version against the server');
    const tablespaces: BackupTablespace[] = [];
    if (staging !== undefined) {
      const staged = await storeStaged(staging.dir, facts.tablespaces, layout, partBytes, (tablespace, index) => newPart(
        tablespace === undefined ? partKey(id, index, compression, keyring !== undefined) : tablespacePartKey(id, tablespace.oid, index, compression, keyring !== undefined),
      ), (line) => progress(`backup ${id}: ${line}`));
      objects.push(...staged.base);
      for (const tablespace of facts.tablespaces) tablespaces.push({ ...tablespace, objects: (staged.tablespaces.get(tablespace.oid) ?? []).map((object) => object.key) });
      objects.push(...facts.tablespaces.flatMap((tablespace) => staged.tablespaces.get(tablespace.oid) ?? []));
      await staging.remove();
    }
    const startWal = segmentFileName(start.timeline, lsnToBigInt(start.startLsn) / BigInt(facts.segmentSize), facts.segmentSize);
    const storedBytes = objects.reduce((sum, object) => sum + object.originalSize, 0);
    progress(`backup ${id}: ${mib(storedBytes)}${layout === 'stream' ? ' compressed by the server' : ' of data directory'} in ${objects.length} part(s); waiting for the WAL ${startWal}… to be archived`);

    // The stop position, and a standby that was promoted meanwhile.
    let stopLsn = endPoint;
    let stoppedAt = now();
    if (facts.standby) {
      const [row] = await session.query({ text: `select pg_is_in_recovery() as standby, (select timeline_id from pg_control_checkpoint()) as timeline, pg_last_wal_replay_lsn()::text as lsn, now() as at` });
      if (row?.['standby'] !== true || Number(row['timeline']) !== start.timeline) {
        throw new BackupFailedError(`the standby ${options.node} was promoted during the backup (timeline ${start.timeline} at the start, ${String(row?.['timeline'])} now): the backup is discarded`, 'take the backup again, from the new primary or from a standby of it');
      }
      // At or after the true stop point (pg_control's minRecoveryPoint): waiting for it is safe.
      if (lsnToBigInt(String(row['lsn'])) > lsnToBigInt(stopLsn)) stopLsn = String(row['lsn']);
      stoppedAt = row['at'] instanceof Date ? row['at'] : now();
    }
    const stopWal = stopWalFile(start.timeline, stopLsn, facts.segmentSize);

    // Rule 7: every WAL file from start to stop in the archive.
    const wanted = walFilesBetween(startWal, stopWal, archive.walSegmentSize ?? facts.segmentSize);
    const deadline = Date.now() + archiveTimeoutMs;
    // A standby promoted while its backup waits for WAL voids it: say so now, not at the archive timeout.
    const checkNotPromoted = async (): Promise<void> => {
      if (!facts.standby) return;
      const [row] = await session.query({ text: `select pg_is_in_recovery() as standby, (select timeline_id from pg_control_checkpoint()) as timeline` });
      if (row?.['standby'] !== true || Number(row['timeline']) !== start.timeline) {
        throw new BackupFailedError(`the standby ${options.node} was promoted during the backup: the backup is discarded`, 'take the backup again, from the new primary or from a standby of it');
      }
    };
    // The stored objects are read back while the archiver catches up.
    const readBack = (async () => {
      for (const object of objects) {
        const problem = await checkObject(repository, object, compression, undefined);
        if (problem !== undefined) throw new BackupFailedError(`a stored part does not read back: ${problem}`, 'check the repository\'s disk, then run the backup again');
      }
    })();
    readBack.catch(() => undefined);
    let missing = await missingWal(repository, wanted);
    while (missing.length > 0) {
      await checkNotPromoted();
      if (Date.now() > deadline) {
        throw new BackupFailedError(
          `WAL ${missing.join(', ')} did not reach the archive within ${Math.round(archiveTimeoutMs / 1000)} s${facts.standby ? ' (the primary archives it: check its archive_command, and set archive_timeout so that a quiet primary switches WAL files)' : await archiverStatus(session)}`,
          'fix the WAL archiving, then run the backup again',
        );
      }
      await delay(100);
      missing = await missingWal(repository, wanted);
    }
    await checkNotPromoted();
    await readBack;

    // The manifest, last.
    const stopped = now();
    const manifest: BackupManifest = {
      format: 1,
      id,
      kind: 'full',
      systemIdentifier: facts.systemIdentifier,
      pgVersion: Math.floor(facts.version / 10000),
      source: { cluster: options.cluster, node: options.node, standby: facts.standby },
      timeline: start.timeline,
      startLsn: start.startLsn,
      stopLsn,
      startWal,
      stopWal,
      startedAt: startedAt.toISOString(),
      stoppedAt: stoppedAt.toISOString(),
      consistentAt: stoppedAt.toISOString(),
      compression,
      ...(layout === 'stream' ? { layout } : {}),
      keyId: keyring?.current.id ?? null,
      objects,
      ...(tablespaces.length > 0 ? { tablespaces } : {}),
      originalBytes: layout === 'stream' ? progressBytes(output) ?? streamed.total : storedBytes,
      durationMs: stopped.getTime() - startedAt.getTime(),
    };
    const key = manifestKey(id);
    stored.push(key);
    await repository.put(key, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8'), { ifExists: 'fail' });
    progress(`backup ${id}: done in ${(manifest.durationMs / 1000).toFixed(1)} s, ${mib(manifest.originalBytes)} → ${mib(objects.reduce((sum, object) => sum + object.size, 0))} stored, WAL ${manifest.startWal}..${stopWal} archived`);
    return manifest;
  } catch (error) {
    child?.kill('SIGTERM');
    await discard(repository, id, stored);
    throw error;
  } finally {
    await staging?.remove();
    await session.close();
  }
}

/** Deletes what a failed backup stored (best effort: retention removes what is left, as incomplete). */
async function discard(repository: Repository, id: string, known: readonly string[]): Promise<void> {
  const keys = new Set(known);
  try {
    for await (const object of repository.list(backupPrefix(id))) keys.add(object.key);
  } catch {
    // The known keys are still worth deleting.
  }
  // Best effort: what stays has no manifest, so restore ignores it and retention deletes it.
  await repository.delete([...keys]).catch(() => undefined);
}
