/**
 * Physical backups (issue 5 item 2, DESIGN §7 rule 7): pg_basebackup writes the data directory as
 * one tar stream to its stdout (`-D - -F tar -X none`); the stream is cut into parts of 64 MiB of
 * tar bytes, each compressed (zstd through the zstd program, level 3; or gzip; or none), encrypted
 * when a keyring is given, and stored as `backups/<id>/pgdata.tar.<NNNNNN>.<ext>[.enc]`. The WAL
 * comes from the archive (`pgwarden wal push`), not from the backup: the backup counts only once
 * every WAL file from its start to its stop is archived, every stored object has been read back
 * against its checksum, and then `manifest.json` is written last. Any failure deletes what was
 * stored and leaves no manifest. docs/backups.md says how to rebuild a data directory.
 *
 * From a primary, PostgreSQL itself waits (in pg_backup_stop) for the stop segment to be archived;
 * a watcher reads pg_stat_progress_basebackup and gives up after the archive timeout when the
 * archiver does not get there. From a standby, the primary archives: pgwarden polls the repository.
 * A standby that was promoted during the backup makes it void.
 *
 * Only a cluster without extra tablespaces can stream to stdout (pg_basebackup's limit): one with
 * tablespaces is refused with that reason.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { setTimeout as delay } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
import type { ConnectionSpec } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError, messageOf } from '../errors.js';
import { decryptBuffer, encryptStream } from './crypto.js';
import type { BackupManifest, Keyring, Repository } from './types.js';
import { backupPrefix, checkObject, childStream, manifestKey, Meter, missingWal, partKey, walFilesBetween } from './verify.js';
import { decodeObject, findArchived, readArchiveInfo } from './wal/archive.js';
import { decompress, zstdInstalled } from './wal/compress.js';
import { parseWalFileName, segmentFileName } from './wal/segment.js';
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
  /** Where pg_basebackup is: default /usr/lib/postgresql/<server major>/bin, else the PATH. */
  readonly pgBin?: string;
  /** Progress lines (for stderr). */
  readonly progress?: (line: string) => void;
  readonly now?: () => Date;
}

/** A backup that did not complete: nothing of it is left in the repository. */
export class BackupFailedError extends UserError {}

/** What backup_label says (the first member of the tar). */
interface BackupLabel {
  readonly startLsn: string;
  readonly startWal: string;
  readonly timeline: number;
  readonly fromStandby: boolean;
}

/** The id of a backup started at `at`: sortable, unique to the second. */
export function backupId(at: Date): string {
  return `${at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-full`;
}

/** Parses backup_label's text. */
export function parseBackupLabel(text: string): BackupLabel {
  const start = /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/m.exec(text);
  const timeline = /^START TIMELINE: (\d+)$/m.exec(text);
  const from = /^BACKUP FROM: (\w+)$/m.exec(text);
  if (start?.[1] === undefined || start[2] === undefined || timeline?.[1] === undefined) throw new Error(`backup_label without START WAL LOCATION and START TIMELINE:\n${text}`);
  return { startLsn: start[1], startWal: start[2], timeline: Number(timeline[1]), fromStandby: from?.[1] === 'standby' };
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

/** Reads backup_label from the start of the tar stream (it is the first member PostgreSQL sends). */
class LabelReader {
  private head: Buffer = Buffer.alloc(0);
  label: string | undefined;
  feed(chunk: Buffer): void {
    if (this.label === undefined && this.head.length < 64 * 1024) {
      this.head = Buffer.concat([this.head, chunk]);
      const name = this.head.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
      const size = Number.parseInt(this.head.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim(), 8);
      if (this.head.length >= 512 && name === 'backup_label' && this.head.length >= 512 + size) {
        this.label = this.head.subarray(512, 512 + size).toString('utf8');
        this.head = Buffer.alloc(0);
      }
    }
  }
}

type ObjectEntry = BackupManifest['objects'][number];

/** One part on its way to the repository: tar bytes in, compressed and maybe encrypted bytes stored. */
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
  readonly tablespaces: number;
  readonly archiveMode: string;
}

async function serverFacts(session: DbSession): Promise<ServerFacts> {
  const [row] = await session.query({
    text: `select current_setting('server_version_num')::int as version, pg_is_in_recovery() as standby,
      (select system_identifier::text from pg_control_system()) as sysid,
      (select timeline_id from pg_control_checkpoint()) as timeline,
      (select setting::bigint from pg_settings where name = 'wal_segment_size') as segsize,
      (select sum(pg_database_size(oid))::bigint from pg_database where datallowconn) as total,
      (select count(*) from pg_tablespace where spcname not in ('pg_default', 'pg_global'))::int as tablespaces,
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
    tablespaces: Number(row['tablespaces']),
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

/** Reads STOP WAL LOCATION and STOP TIME from the backup history file the primary archived. */
async function readHistoryFile(repository: Repository, keyring: Keyring | undefined, timeline: number, startWal: string, startLsn: string, segmentSize: number): Promise<{ stopLsn: string; stoppedAt: Date } | undefined> {
  const offset = (lsnToBigInt(startLsn) % BigInt(segmentSize)).toString(16).toUpperCase().padStart(8, '0');
  const file = parseWalFileName(`${startWal}.${offset}.backup`);
  if (file === undefined || file.timeline !== timeline) return undefined;
  const [object] = await findArchived(repository, file);
  if (object === undefined) return undefined;
  const { header, payload } = decodeObject(object.key, await buffer(await repository.get(object.key, object.sha256)));
  if (header.encrypted && keyring === undefined) throw new BackupFailedError(`the backup history file ${object.key} is encrypted and no key was given`, 'pass the archive\'s key with --key ID=FILE');
  const text = (await decompress(header.encrypted && keyring !== undefined ? await decryptBuffer(keyring, payload) : payload, header.compression)).toString('utf8');
  const stop = /^STOP WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/m.exec(text);
  const time = /^STOP TIME: (.+)$/m.exec(text);
  if (stop?.[1] === undefined) throw new BackupFailedError(`the backup history file ${object.key} has no STOP WAL LOCATION`, 'check the archive with pgwarden verify');
  const stoppedAt = time?.[1] === undefined ? new Date() : new Date(time[1].replace(' ', 'T').replace(/ (\w+)$/, (_m, zone: string) => (zone === 'UTC' ? 'Z' : ` ${zone}`)));
  return { stopLsn: stop[1], stoppedAt: Number.isNaN(stoppedAt.getTime()) ? new Date() : stoppedAt };
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
  const session = await DbSession.open(options.connection, 'pgwarden-backup');
  const stored: string[] = [];
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const facts = await serverFacts(session);
    if (facts.systemIdentifier !== archive.systemIdentifier) {
      throw new BackupFailedError(`the archive in ${repository.description} belongs to system identifier ${archive.systemIdentifier}, this server is ${facts.systemIdentifier}`, 'back up into the repository this cluster archives its WAL to');
    }
    if (facts.tablespaces > 0) {
      throw new BackupFailedError(`the cluster has ${facts.tablespaces} tablespace(s) besides pg_default and pg_global; pgwarden streams the backup as one tar and supports only the main data directory`, 'move the tables to pg_default, or back up with pg_basebackup -D DIR -F tar yourself');
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
    progress(`backup ${id}: from ${facts.standby ? 'standby' : 'primary'} ${options.node} (PostgreSQL ${Math.floor(facts.version / 10000)}), about ${mib(facts.totalBytes)}, ${compression}${keyring === undefined ? '' : `, encrypted with key ${keyring.current.id}`}`);

    // pg_basebackup, its tar stream cut into parts.
    const args = ['-D', '-', '-F', 'tar', '-X', 'none', `--checkpoint=${options.fast ? 'fast' : 'spread'}`, '--no-manifest', '-v', '-w'];
    child = spawn(basebackupPath(options.pgBin, Math.floor(facts.version / 10000)), args, { env: libpqEnv(options.connection, application), stdio: ['ignore', 'pipe', 'pipe'] });
    const running = child;
    const errText: string[] = [];
    running.stderr?.on('data', (chunk: Buffer) => errText.push(chunk.toString('utf8')));
    const exited = new Promise<number | string>((resolve) => {
      running.on('error', (error) => resolve(messageOf(error)));
      running.on('close', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    });

    // The watcher: progress, and a primary that waits too long for its archiver.
    let stopWatching = false;
    let watchFailure: BackupFailedError | undefined;
    let done = 0;
    const watcher = (async () => {
      let waitingSince: number | undefined;
      let lastReport = 0;
      while (!stopWatching) {
        await delay(500);
        if (stopWatching) break;
        if (Date.now() - lastReport >= 2000) {
          lastReport = Date.now();
          const total = Math.max(facts.totalBytes, done);
          progress(`backup ${id}: ${mib(done)} of about ${mib(total)}${total > 0 ? ` (${Math.min(99, Math.floor((done / total) * 100))}%)` : ''}`);
        }
        if (facts.standby) continue;
        try {
          const [row] = await session.query({ text: `select p.pid, p.phase from pg_stat_progress_basebackup p join pg_stat_activity a using (pid) where a.application_name = $1`, values: [application] });
          if (row?.['phase'] === 'waiting for wal archiving to finish') {
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
        } catch {
          // A failed look is not a failed backup: the next one may work.
        }
      }
    })();

    const label = new LabelReader();
    let part: Part | undefined;
    const objects: ObjectEntry[] = [];
    let streamError: unknown;
    try {
      if (running.stdout === null) throw new Error('pg_basebackup has no stdout');
      for await (const data of running.stdout as AsyncIterable<Buffer>) {
        label.feed(data);
        let chunk = data;
        while (chunk.length > 0) {
          if (part === undefined) {
            part = new Part(partKey(id, objects.length + 1, compression, keyring !== undefined), repository, compression, keyring);
            stored.push(part.key);
          }
          const room = partBytes - part.bytes;
          const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
          chunk = chunk.subarray(piece.length);
          await part.write(piece);
          done += piece.length;
          if (part.bytes >= partBytes) {
            objects.push(await part.finish());
            part = undefined;
          }
        }
      }
      if (part !== undefined) objects.push(await part.finish());
    } catch (error) {
      // pg_basebackup would block on a full pipe: stop it before waiting for it.
      streamError = error;
      running.kill('SIGTERM');
    }
    const code = await exited;
    stopWatching = true;
    await watcher;
    if (watchFailure !== undefined) throw watchFailure;
    if (streamError !== undefined) throw streamError instanceof Error ? streamError : new Error(messageOf(streamError));
    if (code !== 0) {
      const lines = errText.join('').split('\n').filter((line) => line.trim() !== '');
      const why = lines.filter((line) => /error|FATAL/.test(line)).join('; ') || lines.pop() || '';
      throw new BackupFailedError(`pg_basebackup failed (${typeof code === 'number' ? `exit ${code}` : code}): ${why}`, 'fix the cause it names (a replication connection needs a pg_hba.conf "replication" line and the REPLICATION privilege), then run the backup again');
    }
    if (label.label === undefined) throw new BackupFailedError('the tar stream from pg_basebackup did not start with backup_label', 'check the pg_basebackup version against the server');
    const parsed = parseBackupLabel(label.label);
    progress(`backup ${id}: ${mib(done)} of data directory in ${objects.length} part(s); waiting for the WAL ${parsed.startWal}… to be archived`);

    // The stop position, and a standby that was promoted meanwhile.
    let stopLsn: string;
    let stoppedAt: Date;
    if (facts.standby) {
      const [row] = await session.query({ text: `select pg_is_in_recovery() as standby, (select timeline_id from pg_control_checkpoint()) as timeline, pg_last_wal_replay_lsn()::text as lsn, now() as at` });
      if (row?.['standby'] !== true || Number(row['timeline']) !== parsed.timeline) {
        throw new BackupFailedError(`the standby ${options.node} was promoted during the backup (timeline ${parsed.timeline} at the start, ${String(row?.['timeline'])} now): the backup is discarded`, 'take the backup again, from the new primary or from a standby of it');
      }
      // At or after the true stop point (pg_control's minRecoveryPoint): waiting for it is safe.
      stopLsn = String(row['lsn']);
      stoppedAt = row['at'] instanceof Date ? row['at'] : now();
    } else {
      const history = await readHistoryFile(repository, keyring, parsed.timeline, parsed.startWal, parsed.startLsn, facts.segmentSize);
      if (history === undefined) {
        const [row] = await session.query({ text: 'select pg_current_wal_lsn()::text as lsn, now() as at' });
        stopLsn = String(row?.['lsn']);
        stoppedAt = row?.['at'] instanceof Date ? row['at'] : now();
      } else ({ stopLsn, stoppedAt } = history);
    }
    const stopWal = stopWalFile(parsed.timeline, stopLsn, facts.segmentSize);

    // Rule 7: every WAL file from start to stop in the archive.
    const wanted = walFilesBetween(parsed.startWal, stopWal, archive.walSegmentSize ?? facts.segmentSize);
    const deadline = Date.now() + archiveTimeoutMs;
    // A standby promoted while its backup waits for WAL voids it: say so now, not at the archive timeout.
    const checkNotPromoted = async (): Promise<void> => {
      if (!facts.standby) return;
      const [row] = await session.query({ text: `select pg_is_in_recovery() as standby, (select timeline_id from pg_control_checkpoint()) as timeline` });
      if (row?.['standby'] !== true || Number(row['timeline']) !== parsed.timeline) {
        throw new BackupFailedError(`the standby ${options.node} was promoted during the backup: the backup is discarded`, 'take the backup again, from the new primary or from a standby of it');
      }
    };
    let missing = await missingWal(repository, wanted);
    while (missing.length > 0) {
      await checkNotPromoted();
      if (Date.now() > deadline) {
        throw new BackupFailedError(
          `WAL ${missing.join(', ')} did not reach the archive within ${Math.round(archiveTimeoutMs / 1000)} s${facts.standby ? ' (the primary archives it: check its archive_command, and set archive_timeout so that a quiet primary switches WAL files)' : await archiverStatus(session)}`,
          'fix the WAL archiving, then run the backup again',
        );
      }
      await delay(500);
      missing = await missingWal(repository, wanted);
    }
    await checkNotPromoted();

    // Every stored object read back against its checksum, then the manifest, last.
    for (const object of objects) {
      const problem = await checkObject(repository, object, compression, undefined);
      if (problem !== undefined) throw new BackupFailedError(`a stored part does not read back: ${problem}`, 'check the repository\'s disk, then run the backup again');
    }
    const stopped = now();
    const manifest: BackupManifest = {
      format: 1,
      id,
      kind: 'full',
      systemIdentifier: facts.systemIdentifier,
      pgVersion: Math.floor(facts.version / 10000),
      source: { cluster: options.cluster, node: options.node, standby: facts.standby },
      timeline: parsed.timeline,
      startLsn: parsed.startLsn,
      stopLsn,
      startWal: parsed.startWal,
      stopWal,
      startedAt: startedAt.toISOString(),
      stoppedAt: stoppedAt.toISOString(),
      consistentAt: stoppedAt.toISOString(),
      compression,
      keyId: keyring?.current.id ?? null,
      objects,
      originalBytes: objects.reduce((sum, object) => sum + object.originalSize, 0),
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
