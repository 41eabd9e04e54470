/**
 * `pgwarden restore` (issue 5 item 9, DESIGN §7 rules 5 and 6; docs/restore.md): a data directory
 * rebuilt from a physical backup's parts, with the recovery settings that replay the archived WAL
 * to a target, and optionally started and watched until recovery ends.
 *
 * 1. Plan (nothing written yet): the catalog and its recovery window choose the backup (the newest
 *    restorable one whose consistent point is before the target) and refuse a target the archive
 *    cannot reach: beyond the archived WAL, behind a gap, or (for a time) after the last commit in
 *    the archive, found with pg_waldump, since a target never reached is fatal on PostgreSQL 13+.
 * 2. Unpack: each part is read with its stored SHA-256 checked as it streams, decrypted,
 *    decompressed, checked against its original size and SHA-256, and fed in order to one
 *    `tar -x` run as the directory's owner. `pgwarden-restore.json` in the target records, after
 *    each part, the start of the tar member in progress at that part's start: an interrupted
 *    restore run again with the same arguments skips the parts before it and re-extracts from that
 *    member on (tar overwrites the files it meets again). A backup with tablespaces: each one's tar
 *    is then extracted whole into its location or where `tablespaceMap` sends it (checked in step
 *    1: empty or creatable, nothing written otherwise), and tablespace_map is rewritten to match
 *    (src/backup/tablespaces.ts). Meanwhile the first WAL segments recovery will read are staged
 *    (src/backup/wal-staging.ts), and every file written is fsynced before the restore is
 *    recorded as unpacked (src/backup/durable.ts).
 * 3. Recovery settings: a block in postgresql.auto.conf (restore_command = pgwarden wal fetch,
 *    recovery_target_*, recovery_target_action = 'promote', archive_mode = 'off' unless asked to
 *    keep archiving) and recovery.signal.
 * 4. With `start`: pg_ctl start as the owner, then wait until pg_control says the cluster is in
 *    production (src/backup/control-file.ts) and pg_is_in_recovery() confirms it; a
 *    server that stops instead (FATAL: the target was not reached) is a RecoveryFailedError.
 *
 * An optional AbortSignal (a drill stopped by SIGTERM) ends the programs it waits on and rejects.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PassThrough, Writable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { writeFileAtomic } from '../atomic-file.js';
import { UserError, messageOf } from '../errors.js';
import { readCatalog } from './catalog.js';
import { clusterState } from './control-file.js';
import { decryptStream } from './crypto.js';
import { durably } from './durable.js';
import { LocalRepository } from './repository/local.js';
import type { BackupManifest, Keyring, Repository } from './types.js';
import { baseObjects, checkTablespaceTargets, rewriteTablespaceMap, TABLESPACE_MAP_FILE, tablespaceObjects, tablespaceTargets, type TablespaceMapping, type TablespaceTarget } from './tablespaces.js';
import { Meter, childStream } from './verify.js';
import { fetchWal } from './wal/fetch.js';
import { segmentsToStage, STAGED_WAL_CLEANUP, STAGED_WAL_DIR, stagedWalShell, stageWal } from './wal-staging.js';
import { parseWalFileName, segmentFileName, segmentNumber } from './wal/segment.js';
import { bigIntToLsn, lsnToBigInt, recoveryWindow, type BackupReach, type RecoveryWindow } from './window.js';

/** The progress file in the target directory. */
export const PROGRESS_FILE = 'pgwarden-restore.json';
/** The server log of a restore started with `start`, in the target directory. */
export const RESTORE_LOG = 'pgwarden-restore.log';
const BLOCK_BEGIN = '# pgwarden restore: recovery settings (begin)';
const BLOCK_END = '# pgwarden restore: recovery settings (end)';
/** How many archived segments back from the newest reachable one pg_waldump looks for a commit. */
const COMMIT_SEARCH_SEGMENTS = 32;

// ---------------------------------------------------------------------------------------------
// Targets

export type RestoreTarget =
  | { readonly kind: 'latest' }
  /** `text`: the instant in UTC as PostgreSQL reads it; `micros`: microseconds since the epoch. */
  | { readonly kind: 'time'; readonly text: string; readonly micros: bigint }
  | { readonly kind: 'lsn'; readonly lsn: string }
  | { readonly kind: 'backup'; readonly id: string };

const TIME_PATTERN = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?)$/i;

/** An ISO timestamp with a zone → microseconds since the epoch; undefined when it is not one. */
export function timestampMicros(text: string): bigint | undefined {
  const match = TIME_PATTERN.exec(text.trim());
  if (match === null) return undefined;
  const [, date, time, fraction = '', zone = 'Z'] = match;
  let offset = zone.toUpperCase() === 'Z' || zone.toUpperCase() === 'UTC' ? 'Z' : zone;
  if (/^[+-]\d{2}$/.test(offset)) offset = `${offset}:00`;
  else if (/^[+-]\d{4}$/.test(offset)) offset = `${offset.slice(0, 3)}:${offset.slice(3)}`;
  const ms = Date.parse(`${date}T${time}${offset}`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1000n + BigInt(fraction.padEnd(6, '0'));
}

/** Microseconds since the epoch → "2026-11-27 19:03:00.123456+00". */
export function microsToText(micros: bigint): string {
  const iso = new Date(Number(micros / 1000n)).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}.${String(micros % 1_000_000n).padStart(6, '0')}+00`;
}

/** Reads `--to`: latest, an ISO timestamp with its zone, an LSN, or a backup id. */
export function parseRestoreTarget(text: string): RestoreTarget {
  const value = text.trim();
  if (value === 'latest') return { kind: 'latest' };
  if (/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(value)) return { kind: 'lsn', lsn: value.toUpperCase() };
  if (/^\d{8}T\d{6}Z-/.test(value)) return { kind: 'backup', id: value };
  const micros = timestampMicros(value);
  if (micros !== undefined) return { kind: 'time', text: microsToText(micros), micros };
  if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(value)) {
    throw new UserError(`--to ${value}: a time needs seconds and its zone`, 'write it as 2026-11-27T19:03:00Z or 2026-11-27 20:03:00.250+01:00');
  }
  throw new UserError(`--to ${value} is not a restore target`, 'use latest, an ISO time with its zone (2026-11-27T19:03:00Z), an LSN (0/3000028) or a backup id (20261127T183000Z-full)');
}

function describeTarget(target: RestoreTarget): string {
  switch (target.kind) {
    case 'latest': return 'latest';
    case 'time': return target.text;
    case 'lsn': return target.lsn;
    case 'backup': return `backup ${target.id}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Plan

export interface RestorePlan {
  readonly manifest: BackupManifest;
  readonly reach: BackupReach;
  readonly target: RestoreTarget;
  readonly window: RecoveryWindow;
  /** For a time target: the last commit time found in the WAL the backup reaches. */
  readonly lastCommit?: string;
}

/** One line per fact of the window, for refusals. */
export function describeWindow(window: RecoveryWindow): string {
  const lines: string[] = [];
  if (window.from === null) lines.push('recovery window: empty (no restorable backup)');
  else lines.push(`recovery window: from ${window.from.time} (backup ${window.from.backupId}, ${window.from.lsn}) to ${window.reachableTo?.lsn ?? '?'} (end of WAL ${window.reachableTo?.wal ?? '?'})`);
  if (window.newestWal !== null && window.reachableTo !== null && window.newestWal.wal !== window.reachableTo.wal) {
    lines.push(`newest archived WAL: ${window.newestWal.wal}, unreachable from any backup`);
  }
  for (const gap of window.gaps) lines.push(`gap: timeline ${gap.timeline}, ${gap.missing} segment(s) missing from ${gap.firstMissing} to ${gap.lastMissing}`);
  for (const backup of window.backups) {
    lines.push(`backup ${backup.id}: ${backup.restorable ? `restores from ${backup.from.time} to ${backup.to?.lsn ?? '?'}` : `not restorable: ${backup.problem ?? ''}`}`);
  }
  return lines.join('\n  ');
}

/** The path of a PostgreSQL program: /usr/lib/postgresql/<major>/bin when it is there, else the PATH. */
function pgProgram(pgBin: string | undefined, major: number, name: string): string {
  const dir = pgBin ?? `/usr/lib/postgresql/${major}/bin`;
  return existsSync(join(dir, name)) ? join(dir, name) : name;
}

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A program started, and its result once it has exited. */
interface Started {
  readonly child: ChildProcess;
  readonly result: Promise<RunResult>;
}

function launch(command: string, args: readonly string[], env?: NodeJS.ProcessEnv): Started {
  const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(env === undefined ? {} : { env }) });
  const result = new Promise<RunResult>((done, fail) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => fail(error.code === 'ENOENT' ? new UserError(`the ${command} program is not installed`, 'install the PostgreSQL server package of the backup\'s version') : error));
    child.on('close', (code) => done({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
  return { child, result };
}

/** Runs a program to its end; when `signal` fires, the program is stopped and this rejects once it has exited. */
function run(command: string, args: readonly string[], env?: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<RunResult> {
  const { child, result } = launch(command, args, env);
  if (signal === undefined) return result;
  const forget = terminateOnAbort(child, signal);
  return result.finally(forget).then((outcome) => {
    throwIfAborted(signal);
    return outcome;
  });
}

// ---------------------------------------------------------------------------------------------
// Interrupting (a drill stopped by a signal, src/backup/drill.ts)

/** The error an aborted operation rejects with: the signal's reason when it is an Error, else "interrupted by <reason>". */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(`interrupted by ${String(reason)}`);
}

/** Throws abortError(signal) when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw abortError(signal);
}

/** Sends SIGTERM to `child`; to the program itself when `child` is runuser (below). */
export function terminate(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  // runuser answers a SIGTERM by passing it on and killing its command 2 s later: stop the
  // command directly instead, and runuser exits with it at once.
  const direct = child.spawnfile === 'runuser' ? runuserChildren(child.pid) : [];
  for (const pid of direct.length === 0 ? [child.pid] : direct) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
}

function runuserChildren(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((word) => word !== '').map(Number);
  } catch {
    return [];
  }
}

/** Terminates `child` when `signal` fires; returns the function that stops listening. */
export function terminateOnAbort(child: ChildProcess, signal: AbortSignal | undefined): () => void {
  if (signal === undefined) return () => undefined;
  const stop = (): void => terminate(child);
  if (signal.aborted) {
    stop();
    return () => undefined;
  }
  signal.addEventListener('abort', stop, { once: true });
  return () => signal.removeEventListener('abort', stop);
}

/** The latest COMMIT/ABORT time (microseconds) pg_waldump finds in one WAL file, or undefined. */
async function lastCommitIn(path: string, waldump: string): Promise<bigint | undefined> {
  const result = await run(waldump, [path], { ...process.env, TZ: 'UTC' });
  let last: bigint | undefined;
  for (const match of result.stdout.matchAll(/desc: (?:COMMIT|ABORT) (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC/g)) {
    const micros = timestampMicros(`${match[1] ?? ''}Z`);
    if (micros !== undefined && (last === undefined || micros > last)) last = micros;
  }
  if (last === undefined && result.stdout === '' && result.code !== 0 && !/invalid record|could not find a valid record/.test(result.stderr)) {
    throw new Error(`pg_waldump ${path} failed: ${result.stderr.trim()}`);
  }
  return last;
}

/** The last commit time in the WAL a backup reaches, looking back from its newest segment. */
async function lastCommitReached(repository: Repository, keyring: Keyring | undefined, manifest: BackupManifest, reach: BackupReach, segmentSize: number, pgBin: string | undefined): Promise<bigint | undefined> {
  if (reach.to === null) return undefined;
  const waldump = pgProgram(pgBin, manifest.pgVersion, 'pg_waldump');
  const scratch = await mkdtemp(join(tmpdir(), 'pgwarden-restore-wal-'));
  try {
    const stopTimeline = reach.to.timeline;
    const ranges = reach.ranges.filter((range) => range.timeline === stopTimeline);
    let segment = lsnToBigInt(reach.to.lsn) / BigInt(segmentSize) - 1n;
    const first = segmentOfName(ranges[0]?.fromWal ?? reach.to.wal, segmentSize);
    for (let n = 0; n < COMMIT_SEARCH_SEGMENTS && segment >= first; n++, segment--) {
      const name = segmentFileName(stopTimeline, segment, segmentSize);
      const destination = join(scratch, name);
      const fetched = await fetchWal(name, destination, { repository, keyring, dataDirectory: scratch });
      if (fetched.outcome !== 'restored') break;
      const last = await lastCommitIn(destination, waldump);
      await rm(destination, { force: true });
      if (last !== undefined) return last;
    }
    return undefined;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function segmentOfName(name: string, segmentSize: number): bigint {
  const file = parseWalFileName(name);
  const number = file === undefined ? undefined : segmentNumber(file, segmentSize);
  if (number === undefined) throw new Error(`not a WAL segment name: "${name}"`);
  return number;
}

/** A restore refused before anything was written: a target outside the window, a non-empty or running directory. */
export class RestoreRefusedError extends UserError {}

/** Refusal of a target the archive cannot reach, with the window. */
function unreachable(message: string, window: RecoveryWindow): UserError {
  return new RestoreRefusedError(`${message}\n  ${describeWindow(window)}`, 'choose a target inside the recovery window (pgwarden backups list shows it); nothing was written');
}

/**
 * Chooses the backup for `target` and checks that the archive reaches it. Reads the repository
 * (and for a time target, the newest WAL through pg_waldump); writes nothing.
 */
export async function planRestore(repository: Repository, keyring: Keyring | undefined, target: RestoreTarget, pgBin?: string): Promise<RestorePlan> {
  const catalog = await readCatalog(repository, keyring === undefined ? {} : { keyring });
  const window = recoveryWindow(catalog);
  const manifests = catalog.backups.map((backup) => backup.manifest);
  const restorable = window.backups.filter((backup) => backup.restorable);
  const manifestOf = (id: string): BackupManifest => {
    const manifest = manifests.find((m) => m.id === id);
    if (manifest === undefined) throw new Error(`no manifest for ${id}`);
    return manifest;
  };
  if (restorable.length === 0) throw unreachable(`${repository.description} holds no restorable backup`, window);

  switch (target.kind) {
    case 'backup': {
      const reach = window.backups.find((backup) => backup.id === target.id);
      if (reach === undefined) throw unreachable(`backup ${target.id} is not a complete backup in ${repository.description}`, window);
      if (!reach.restorable) throw unreachable(`backup ${target.id} cannot be restored: ${reach.problem ?? 'its WAL is incomplete'}`, window);
      return { manifest: manifestOf(reach.id), reach, target, window };
    }
    case 'latest': {
      const reach = restorable[restorable.length - 1];
      if (reach === undefined || reach.to === null) throw unreachable('no backup reaches any archived WAL', window);
      if (window.newestWal !== null && window.newestWal.wal !== reach.to.wal) {
        throw unreachable(`a restore to latest from backup ${reach.id} would stop at ${reach.to.wal}, before the newest archived WAL ${window.newestWal.wal} (rule 6)`, window);
      }
      return { manifest: manifestOf(reach.id), reach, target, window };
    }
    case 'lsn': {
      const wanted = lsnToBigInt(target.lsn);
      const candidates = restorable.filter((backup) => lsnToBigInt(backup.from.lsn) <= wanted);
      const reach = candidates[candidates.length - 1];
      if (reach === undefined) throw unreachable(`LSN ${target.lsn} is before the consistent point of every restorable backup`, window);
      if (reach.to === null || lsnToBigInt(reach.to.lsn) <= wanted) {
        throw unreachable(`LSN ${target.lsn} is beyond the archived WAL that backup ${reach.id} reaches (up to ${reach.to?.lsn ?? 'nothing'})`, window);
      }
      return { manifest: manifestOf(reach.id), reach, target, window };
    }
    case 'time': {
      const candidates = restorable.filter((backup) => {
        const micros = timestampMicros(backup.from.time);
        return micros !== undefined && micros < target.micros;
      });
      const reach = candidates[candidates.length - 1];
      if (reach === undefined) throw unreachable(`${target.text} is before the consistent point of every restorable backup`, window);
      const manifest = manifestOf(reach.id);
      const last = await lastCommitReached(repository, keyring, manifest, reach, window.segmentSize, pgBin);
      if (last === undefined || last <= target.micros) {
        throw unreachable(
          `${target.text} is after the last commit in the archived WAL that backup ${reach.id} reaches (${last === undefined ? 'none found' : microsToText(last)}): recovery would never reach it, which is fatal on PostgreSQL 13+`,
          window,
        );
      }
      return { manifest, reach, target, window, lastCommit: microsToText(last) };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The owner and the target directory

export interface Owner {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

async function idOf(args: readonly string[]): Promise<string> {
  const result = await run('id', args);
  if (result.code !== 0) throw new UserError(`no such OS user: ${args[args.length - 1] ?? ''}`, 'pass --owner with the user that runs PostgreSQL (usually postgres)');
  return result.stdout.trim();
}

/** The OS user named, or the owner of `parent` (postgres when root owns it). */
export async function resolveOwner(name: string | undefined, parent: string): Promise<Owner> {
  let user = name;
  if (user === undefined) {
    const uid = await stat(parent).then((s) => s.uid, () => 0);
    user = uid === 0 ? 'postgres' : await idOf(['-nu', String(uid)]);
  }
  const uid = Number(await idOf(['-u', user]));
  const gid = Number(await idOf(['-g', user]));
  const self = process.getuid?.() ?? -1;
  if (self !== 0 && self !== uid) {
    throw new UserError(`the restored directory must belong to ${user}, and only root or ${user} can make it so`, `run pgwarden restore as ${user} (e.g. runuser -u ${user} -- pgwarden restore …) or as root`);
  }
  return { name: user, uid, gid };
}

/** [program, args] that run `program` as `owner` (through runuser when we are root and they are not us). */
function asOwner(owner: Owner, program: string, args: readonly string[]): [string, string[]] {
  if ((process.getuid?.() ?? -1) === owner.uid) return [program, [...args]];
  return ['runuser', ['-u', owner.name, '--', program, ...args]];
}

async function giveTo(owner: Owner, path: string): Promise<void> {
  if ((process.getuid?.() ?? -1) === 0) await chown(path, owner.uid, owner.gid);
}

/** The pid in postmaster.pid when that process is alive. */
function runningPostmaster(dir: string): Promise<number | undefined> {
  return readFile(join(dir, 'postmaster.pid'), 'utf8').then((text) => {
    const pid = Number.parseInt(text, 10);
    if (!(pid > 0)) return undefined;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
    }
  }, () => undefined);
}

interface Progress {
  readonly format: 1;
  readonly backupId: string;
  readonly target: string;
  /** 'unpacking' (resumable), 'unpacked' (every part is in; settings may be rewritten), 'started'. */
  readonly state: 'unpacking' | 'unpacked' | 'started';
  /** Parts unpacked and verified, counted from the first. */
  readonly partsDone: number;
  /** The tar offset to resume from: the start of the member in progress at the start of the last part done. */
  readonly resumeOffset: number;
  /** The tablespace directories this restore writes into: a resumed run may find them non-empty. */
  readonly tablespaceDirs?: readonly string[];
  readonly updatedAt: string;
}

async function readProgress(dir: string): Promise<Progress | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, PROGRESS_FILE), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Progress;
    if (value.format !== 1 || typeof value.backupId !== 'string' || typeof value.resumeOffset !== 'number') throw new Error('bad format');
    return value;
  } catch {
    throw new UserError(`${join(dir, PROGRESS_FILE)} is damaged`, 'delete the target directory and restore again');
  }
}

async function writeProgress(dir: string, owner: Owner, progress: Omit<Progress, 'format' | 'updatedAt'>): Promise<void> {
  await writeFileAtomic(dir, PROGRESS_FILE, `${JSON.stringify({ format: 1, ...progress, updatedAt: new Date().toISOString() }, null, 2)}\n`);
  await giveTo(owner, join(dir, PROGRESS_FILE));
}

/**
 * Checks the target: absent or empty (created, owned by the owner, mode 0700), or holding the
 * progress file of the same restore (resumed). Refuses anything else, and any running server.
 */
async function prepareTarget(dir: string, owner: Owner, backupId: string, target: string): Promise<Progress | undefined> {
  const pid = await runningPostmaster(dir);
  if (pid !== undefined) throw new RestoreRefusedError(`${dir} belongs to a running PostgreSQL server (postmaster.pid: process ${pid})`, 'restore into another directory, or stop that server first and move its directory away');
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    if (!existsSync(dirname(dir))) throw new UserError(`the parent of ${dir} does not exist`, `create ${dirname(dir)} first`);
    await mkdir(dir, { mode: 0o700 });
    entries = [];
  }
  const progress = entries.includes(PROGRESS_FILE) ? await readProgress(dir) : undefined;
  if (progress === undefined && entries.length > 0) {
    throw new RestoreRefusedError(`${dir} is not empty (${entries.length} entries, e.g. ${entries.slice(0, 3).join(', ')})`, 'restore into an empty or new directory; pgwarden never overwrites one');
  }
  if (progress !== undefined) {
    if (progress.backupId !== backupId || progress.target !== target) {
      throw new RestoreRefusedError(`${dir} holds an interrupted restore of backup ${progress.backupId} to ${progress.target}, not of ${backupId} to ${target}`, 'run the same restore again to resume it, or delete the directory to start over');
    }
    if (progress.state === 'started') throw new RestoreRefusedError(`${dir} was restored and started already: it is a cluster now`, `start it with pg_ctl -D ${dir} start as its owner, or delete it to restore again`);
  }
  await giveTo(owner, dir);
  await chmod(dir, 0o700);
  return progress;
}

// ---------------------------------------------------------------------------------------------
// Unpacking

/**
 * Follows tar headers in a stream fed in order, to know where each member (with its pax or GNU
 * long-name headers) starts: a resumed `tar -x` must begin at a header.
 */
export class TarBoundaries {
  private nextHeaderAt: number;
  private groupStart: number;
  private inExtended = false;
  private header: Buffer[] = [];
  private headerBytes = 0;

  constructor(start: number) {
    this.nextHeaderAt = start;
    this.groupStart = start;
  }

  /** `chunk` is the stream from absolute offset `at` on. */
  feed(chunk: Buffer, at: number): void {
    let pos = 0;
    while (pos < chunk.length) {
      const here = at + pos;
      if (this.headerBytes > 0 || here === this.nextHeaderAt) {
        if (this.headerBytes === 0 && !this.inExtended) this.groupStart = here;
        const take = Math.min(512 - this.headerBytes, chunk.length - pos);
        this.header.push(chunk.subarray(pos, pos + take));
        this.headerBytes += take;
        pos += take;
        if (this.headerBytes === 512) this.parse(Buffer.concat(this.header));
      } else {
        pos += Math.max(1, Math.min(this.nextHeaderAt - here, chunk.length - pos));
      }
    }
  }

  private parse(block: Buffer): void {
    this.header = [];
    this.headerBytes = 0;
    const start = this.nextHeaderAt;
    if (block.every((byte) => byte === 0)) {
      this.nextHeaderAt = start + 512;
      this.inExtended = false;
      return;
    }
    const type = String.fromCharCode(block[156] ?? 0);
    const size = tarSize(block.subarray(124, 136));
    this.nextHeaderAt = start + 512 + Math.ceil(size / 512) * 512;
    this.inExtended = ['x', 'g', 'L', 'K'].includes(type);
  }

  /** Where `tar -x` can resume to re-extract everything from `offset` on (call with the stream fed exactly up to it). */
  resumePoint(offset: number): number {
    return this.headerBytes === 0 && this.nextHeaderAt === offset && !this.inExtended ? offset : this.groupStart;
  }
}

function tarSize(field: Buffer): number {
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const text = field.toString('latin1').replace(/[\0 ]+/g, '');
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function decoder(compression: BackupManifest['compression']): { stream: Duplex; exited: Promise<void> } {
  if (compression === 'none') return { stream: new PassThrough(), exited: Promise.resolve() };
  if (compression === 'gzip') return { stream: createGunzip(), exited: Promise.resolve() };
  return childStream('zstd', ['-d', '-q', '-c', '--no-progress']);
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Thrown when a part does not give back what its manifest records; names the part. */
export class DamagedPartError extends UserError {}

/** One tar of a backup to extract: the data directory's, or a tablespace's. */
interface TarUnit {
  readonly objects: BackupManifest['objects'];
  /** Where `tar -x` extracts it. */
  readonly into: string;
  /** Before each progress line's "part …": '' for the data directory, "tablespace NAME: " for a tablespace. */
  readonly label: string;
  /**
   * The data directory's tar: resumed from the progress file (in `dir`), recorded there after each
   * part, checked for backup_label. A tablespace's is extracted whole each time.
   */
  readonly base: boolean;
}

/** What every progress file of this restore also records (the tablespace directories it writes into). */
type ProgressExtra = Pick<Progress, 'tablespaceDirs'>;

async function unpack(plan: RestorePlan, options: RestoreOptions, owner: Owner, dir: string, progress: Progress | undefined, unit: TarUnit, extra: ProgressExtra): Promise<{ done: number; skipped: number }> {
  const manifest = { ...plan.manifest, objects: unit.objects };
  const objects = unit.objects;
  const starts: number[] = [];
  let total = 0;
  for (const object of objects) {
    starts.push(total);
    total += object.originalSize;
  }
  // A 'stream' backup's parts decode only one after the other from the first, straight from zstd
  // into tar: a resumed restore unpacks it all again (tar overwrites what it wrote before).
  const stream = manifest.layout === 'stream';
  if (stream && manifest.tablespaces === undefined) total = manifest.originalBytes;
  const resumeOffset = stream || !unit.base ? 0 : progress?.resumeOffset ?? 0;
  let first = 0;
  while (!stream && first + 1 < objects.length && (starts[first + 1] ?? 0) <= resumeOffset) first++;
  if (first > 0) options.progress?.(`restore: resuming at part ${first + 1}/${objects.length}: parts 1-${first} were unpacked and verified before`);
  if (stream && unit.base && progress !== undefined) options.progress?.(`restore: resuming: backup ${manifest.id} was compressed by the server as one stream, so it is unpacked again from its first part`);

  // 1 MiB records (-b 2048; -B: a pipe's short reads make whole records): tar reads and writes in
  // 1 MiB calls instead of 10 KiB ones, a third less time in the kernel for a large cluster.
  const [program, args] = asOwner(owner, 'tar', ['-x', '-b', '2048', '-B', '-f', '-', '-C', unit.into]);
  throwIfAborted(options.signal);
  const tar = spawn(program, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  const forgetTar = terminateOnAbort(tar, options.signal);
  const tarErrors: Buffer[] = [];
  tar.stderr.on('data', (chunk: Buffer) => tarErrors.push(chunk));
  let tarError: Error | undefined;
  const tarExited = new Promise<void>((done, fail) => {
    tar.on('error', (error) => fail(error));
    tar.on('close', (code, signal) => {
      if (code === 0) done();
      else fail(new Error(`tar -x into ${unit.into} failed (${signal ?? `exit ${code ?? '?'}`}): ${Buffer.concat(tarErrors).toString('utf8').trim()}`));
    });
  });
  tarExited.catch((error: unknown) => {
    tarError = error instanceof Error ? error : new Error(String(error));
  });
  tar.stdin.on('error', () => undefined);

  const boundaries = new TarBoundaries(resumeOffset);
  let position = starts[first] ?? 0;
  const into = (): Writable => new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      void (async () => {
        if (tarError !== undefined) throw tarError;
        let data = chunk;
        if (position < resumeOffset) {
          const skip = Math.min(resumeOffset - position, data.length);
          position += skip;
          data = data.subarray(skip);
        }
        if (data.length === 0) return;
        boundaries.feed(data, position);
        position += data.length;
        if (!tar.stdin.write(data)) await Promise.race([once(tar.stdin, 'drain'), tarExited.then(() => Promise.reject(new Error('tar exited before the end of the archive')))]);
      })().then(() => callback(), (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))));
    },
  });

  const encrypted = manifest.keyId !== null;
  if (encrypted && options.keyring === undefined) throw new UserError(`backup ${manifest.id} is encrypted with key ${manifest.keyId ?? ''}`, `pass --key ${manifest.keyId ?? 'ID'}=FILE or --key-env ${manifest.keyId ?? 'ID'}=VAR`);
  try {
    if (stream) {
      await unpackStream(manifest, options, tar.stdin, (index, object) => {
        const label = `${unit.label}part ${index + 1}/${objects.length} (${object.key})`;
        return (async () => {
          if (unit.base) await writeProgress(dir, owner, { backupId: manifest.id, target: describeTarget(plan.target), state: 'unpacking', partsDone: index + 1, resumeOffset: 0, ...extra });
          options.progress?.(`restore: ${label} verified and unpacked (${index + 1} of ${objects.length} parts of ${mib(total)})`);
        })();
      });
    }
    for (let index = first; !stream && index < objects.length; index++) {
      const object = objects[index];
      if (object === undefined) break;
      const resumeHere = boundaries.resumePoint(Math.max(starts[index] ?? 0, resumeOffset));
      const label = `${unit.label}part ${index + 1}/${objects.length} (${object.key})`;
      try {
        const stored = await options.repository.get(object.key, object.sha256);
        const storedMeter = new Meter();
        const original = new Meter();
        const { stream: inflate, exited } = decoder(manifest.compression);
        const abortable = options.signal === undefined ? {} : { signal: options.signal };
        const flow = encrypted && options.keyring !== undefined
          ? pipeline(stored, storedMeter, decryptStream(options.keyring), inflate, original, into(), abortable)
          : pipeline(stored, storedMeter, inflate, original, into(), abortable);
        await Promise.all([flow, exited]);
        if (storedMeter.bytes !== object.size) throw new Error(`${storedMeter.bytes} bytes stored, the manifest records ${object.size}`);
        if (original.bytes !== object.originalSize || original.digest() !== object.originalSha256) {
          throw new Error(`it decodes to ${original.bytes} bytes that differ from the original the manifest records (${object.originalSize} bytes, SHA-256 ${object.originalSha256.slice(0, 12)}…)`);
        }
      } catch (error) {
        // Stopped on purpose: the part is not damaged.
        throwIfAborted(options.signal);
        throw new DamagedPartError(`${label} of backup ${manifest.id} failed: ${messageOf(error)}`, 'check the repository with pgwarden verify; restore from another copy of the repository or another backup');
      }
      if (unit.base) await writeProgress(dir, owner, { backupId: manifest.id, target: describeTarget(plan.target), state: 'unpacking', partsDone: index + 1, resumeOffset: resumeHere, ...extra });
      options.progress?.(`restore: ${label} verified and unpacked (${mib(object.originalSize)}; ${mib((starts[index] ?? 0) + object.originalSize)} of ${mib(total)})`);
    }
    tar.stdin.end();
    await tarExited;
  } catch (error) {
    tar.stdin.destroy();
    await tarExited.catch(() => undefined);
    throwIfAborted(options.signal);
    throw error;
  } finally {
    forgetTar();
  }
  if (unit.base && !existsSync(join(dir, 'backup_label'))) throw new UserError(`${dir} has no backup_label after unpacking backup ${manifest.id}`, 'the backup is not a pg_basebackup data directory: restore another backup');
  return { done: objects.length - first, skipped: first };
}

/**
 * Unpacks a 'stream' backup: every part fetched and checked (stored SHA-256, then its decrypted
 * slice against the manifest) and fed, in order, to one `zstd -d` that writes straight into tar's
 * stdin (the decoded bytes never cross Node). `partDone` runs after each part (progress).
 * The stored and decrypted bytes are checked; the whole tar's SHA-256 is `pgwarden verify`'s to
 * check (the same compressed bytes always decode to the same tar).
 */
async function unpackStream(
  manifest: BackupManifest, options: RestoreOptions, tarInput: Writable, partDone: (index: number, object: BackupManifest['objects'][number]) => Promise<void>,
): Promise<void> {
  if (manifest.compression !== 'zstd') throw new UserError(`backup ${manifest.id} has layout stream with ${manifest.compression} compression, which this pgwarden does not read`, 'restore it with the pgwarden version that wrote it');
  const encrypted = manifest.keyId !== null;
  const inflate = spawn('zstd', ['-d', '-q', '-c', '--no-progress'], { stdio: ['pipe', tarInput, 'pipe'] });
  // zstd holds tar's stdin now: tar sees the end of its input when zstd exits.
  tarInput.destroy();
  const errors: Buffer[] = [];
  inflate.stderr.on('data', (chunk: Buffer) => errors.push(chunk));
  inflate.stdin.on('error', () => undefined);
  const exited = new Promise<void>((done, fail) => {
    inflate.on('error', (error) => fail(error));
    inflate.on('close', (code, signal) => (code === 0 ? done() : fail(new Error(`zstd -d failed (${signal ?? `exit ${code ?? '?'}`}): ${Buffer.concat(errors).toString('utf8').trim()}`))));
  });
  exited.catch(() => undefined);
  const stopOnAbort = () => inflate.kill('SIGTERM');
  options.signal?.addEventListener('abort', stopOnAbort, { once: true });
  const fix = 'check the repository with pgwarden verify; restore from another copy of the repository or another backup';
  try {
    for (const [index, object] of manifest.objects.entries()) {
      const label = `part ${index + 1}/${manifest.objects.length} (${object.key})`;
      try {
        const stored = await options.repository.get(object.key, object.sha256);
        const storedMeter = new Meter();
        const slice = new Meter();
        const plain = encrypted && options.keyring !== undefined ? decryptStream(options.keyring) : new PassThrough();
        const feeding = pipeline(stored, storedMeter, plain, slice);
        feeding.catch(() => undefined);
        for await (const chunk of slice as AsyncIterable<Buffer>) {
          if (!inflate.stdin.write(chunk)) await Promise.race([once(inflate.stdin, 'drain'), exited.then(() => { throw new Error('zstd -d ended before the last part'); })]);
        }
        await feeding;
        if (storedMeter.bytes !== object.size) throw new Error(`${storedMeter.bytes} bytes stored, the manifest records ${object.size}`);
        if (slice.bytes !== object.originalSize || slice.digest() !== object.originalSha256) {
          throw new Error(`it decrypts to ${slice.bytes} bytes that differ from what the manifest records (${object.originalSize} bytes, SHA-256 ${object.originalSha256.slice(0, 12)}…)`);
        }
      } catch (error) {
        throwIfAborted(options.signal);
        throw new DamagedPartError(`${label} of backup ${manifest.id} failed: ${messageOf(error)}`, fix);
      }
      await partDone(index, object);
    }
    inflate.stdin.end();
    await exited;
  } catch (error) {
    inflate.kill('SIGTERM');
    await exited.catch(() => undefined);
    throwIfAborted(options.signal);
    if (error instanceof DamagedPartError) throw error;
    throw new DamagedPartError(`the parts of backup ${manifest.id} do not decode as one zstd stream: ${messageOf(error)}`, fix);
  } finally {
    options.signal?.removeEventListener('abort', stopOnAbort);
  }
}

// ---------------------------------------------------------------------------------------------
// Tablespaces (src/backup/tablespaces.ts)

/** Points tablespace_map (which PostgreSQL turns into pg_tblspc links at its first start) at each tablespace's directory. */
async function pointTablespaces(dir: string, owner: Owner, targets: readonly TablespaceTarget[]): Promise<void> {
  const path = join(dir, TABLESPACE_MAP_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new UserError(`${dir} has no ${TABLESPACE_MAP_FILE} after unpacking a backup with ${targets.length} tablespace(s)`, 'the backup is not a tar-format pg_basebackup with tablespaces: restore another backup');
  }
  let rewritten: string;
  try {
    rewritten = rewriteTablespaceMap(text, new Map(targets.map((target) => [target.tablespace.oid, target.dir])));
  } catch (error) {
    throw new UserError(`${path} does not match the backup's manifest: ${messageOf(error)}`, 'restore another backup');
  }
  await writeFileAtomic(dir, TABLESPACE_MAP_FILE, rewritten);
  await giveTo(owner, path);
  await chmod(path, 0o600);
}

/** `dir` (and any missing parent) created for the owner, mode 0700; an existing one given to the owner. */
async function createOwned(dir: string, owner: Owner): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode: 0o700 });
  const created: string[] = [];
  if (first !== undefined) {
    for (let path = dir; path.startsWith(first); path = dirname(path)) {
      created.push(path);
      if (path === first) break;
    }
  }
  for (const path of new Set([dir, ...created])) await giveTo(owner, path);
  await chmod(dir, 0o700);
}

// ---------------------------------------------------------------------------------------------
// Recovery settings

function quoteShell(word: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function quoteConf(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * The restore_command: `<node> <pgwarden> wal fetch %f %p --repo DIR [--key ID=FILE | --key-env ID=VAR]…`
 * (never key material). With `localArchive` (the one local repository it reads), a shell test
 * first answers "not in the archive" (exit 1) without starting Node when the archive's directory
 * is readable and holds no object of that name: recovery asks for many files that are not there
 * (the next segment, NNNNNNNN.history of timelines that never existed), each a process start.
 * Anything else, including an unreadable directory, goes to `wal fetch`, which decides. Before
 * that, a file the backup itself brought in pg_wal/ (`-X fetch`: the WAL from its start to its
 * stop, whole segments) is answered "not in the archive" too, so that the server reads it there
 * (restore_command runs in the data directory; PostgreSQL falls back to pg_wal/ on exit 1).
 * First of all, a segment the restore staged (src/backup/wal-staging.ts) is moved into place.
 */
export function restoreCommandLine(pgwarden: readonly string[], walFetchArgs: readonly string[], localArchive?: string): string {
  const fetch = [...pgwarden, 'wal', 'fetch'].map(quoteShell).concat('%f', '%p', ...walFetchArgs.map(quoteShell)).join(' ');
  if (localArchive === undefined) return `${stagedWalShell()}; exec ${fetch}`;
  const wal = quoteShell(join(localArchive, 'wal'));
  return `${stagedWalShell()}; [ -f pg_wal/%f ] && exit 1; w=${wal}; d=$w/$(echo %f | cut -c1-8); if [ -r "$w" ] && [ -x "$w" ] && { [ ! -e "$d" ] || { [ -r "$d" ] && [ -x "$d" ] && ! ls "$d"/%f.* >/dev/null 2>&1; }; }; then exit 1; fi; exec ${fetch}`;
}

/** The local repository directory restore_command reads, when it reads exactly one (--repo DIR). */
function localArchiveOf(repository: Repository, walFetchArgs: readonly string[]): string | undefined {
  const [flag, dir] = walFetchArgs;
  return flag === '--repo' && dir !== undefined && repository instanceof LocalRepository && resolve(dir) === repository.root ? repository.root : undefined;
}

/** The recovery settings for `target`, as postgresql.auto.conf lines. */
export function recoverySettings(target: RestoreTarget, restoreCommand: string, extra: Readonly<Record<string, string>>): string[] {
  const settings: [string, string][] = [['restore_command', restoreCommand], ['recovery_target_timeline', 'latest']];
  if (target.kind === 'time') settings.push(['recovery_target_time', target.text], ['recovery_target_inclusive', 'on']);
  if (target.kind === 'lsn') settings.push(['recovery_target_lsn', target.lsn], ['recovery_target_inclusive', 'on']);
  if (target.kind === 'backup') settings.push(['recovery_target', 'immediate']);
  settings.push(['recovery_target_action', 'promote'], ...Object.entries(extra));
  return settings.map(([name, value]) => `${name} = ${quoteConf(value)}`);
}

async function writeRecoverySettings(dir: string, owner: Owner, lines: readonly string[], plan: RestorePlan): Promise<void> {
  const path = join(dir, 'postgresql.auto.conf');
  const existing = await readFile(path, 'utf8').catch(() => '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n');
  const begin = existing.indexOf(BLOCK_BEGIN);
  const end = existing.indexOf(BLOCK_END);
  const kept = begin >= 0 && end > begin ? existing.slice(0, begin) + existing.slice(end + BLOCK_END.length + 1) : existing;
  const block = [BLOCK_BEGIN, `# backup ${plan.manifest.id}, target ${describeTarget(plan.target)}, written ${new Date().toISOString()}`, ...lines, BLOCK_END].join('\n');
  await writeFile(path, `${kept.endsWith('\n') || kept === '' ? kept : `${kept}\n`}${block}\n`, { mode: 0o600 });
  await giveTo(owner, path);
  await writeFile(join(dir, 'recovery.signal'), '', { mode: 0o600 });
  await giveTo(owner, join(dir, 'recovery.signal'));
}

// ---------------------------------------------------------------------------------------------
// Starting

/** Thrown when the restored server stops instead of finishing recovery (rule 6). */
export class RecoveryFailedError extends UserError {}

export function freeTcpPort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address !== null && typeof address === 'object' ? done(address.port) : fail(new Error('no free port'))));
    });
  });
}

async function fatalLines(logPath: string): Promise<string> {
  const log = await readFile(logPath, 'utf8').catch(() => '');
  const lines = log.split('\n').filter((line) => /\b(FATAL|PANIC):/.test(line));
  return lines.length > 0 ? lines.join('\n  ') : log.trim().split('\n').slice(-10).join('\n  ');
}

export interface RecoveryOutcome {
  readonly port: number;
  /** The last WAL position replayed and the commit time of the last transaction replayed. */
  readonly reachedLsn: string;
  readonly reachedTime: string | null;
  readonly timeline: number;
  readonly durationMs: number;
  /** The server log line that says where recovery stopped, when the target was not latest. */
  readonly stopLine: string | null;
}

/**
 * `pg_ctl start -w` as the owner. When `signal` fires, pg_ctl is stopped, but only once the server
 * it launched has written postmaster.pid (or pg_ctl has returned): stopped sooner, it could leave
 * a server starting up that the caller's `pg_ctl stop`, which reads postmaster.pid, cannot see.
 */
async function startServer(program: string, args: readonly string[], dir: string, signal: AbortSignal | undefined): Promise<RunResult> {
  throwIfAborted(signal);
  const { child, result } = launch(program, args);
  let ended = false;
  const end = (): void => {
    ended = true;
  };
  result.then(end, end);
  const stop = async (): Promise<void> => {
    while (!ended && !existsSync(join(dir, 'postmaster.pid'))) await new Promise((done) => setTimeout(done, 20));
    terminate(child);
  };
  const onAbort = (): void => void stop();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const outcome = await result;
    throwIfAborted(signal);
    return outcome;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

async function startAndWait(plan: RestorePlan, options: RestoreOptions, owner: Owner, dir: string, port: number): Promise<RecoveryOutcome> {
  const started = Date.now();
  const major = plan.manifest.pgVersion;
  const logPath = join(dir, RESTORE_LOG);
  await writeFile(logPath, '', { flag: 'a', mode: 0o600 });
  await giveTo(owner, logPath);
  const [ctl, ctlArgs] = asOwner(owner, pgProgram(options.pgBin, major, 'pg_ctl'), ['start', '-D', dir, '-l', logPath, '-w', '-t', '86400', '-s']);
  options.progress?.(`restore: starting PostgreSQL ${major} on port ${port} as ${owner.name}; server log ${logPath}`);
  // pg_ctl -w returns once the server accepts connections (in hot standby, long before the end of
  // recovery); meanwhile pg_control is polled, so the end of recovery is seen within milliseconds.
  let ctlResult: RunResult | undefined;
  const ctlDone = startServer(ctl, ctlArgs, dir, options.signal).then((result) => {
    ctlResult = result;
    return result;
  });
  ctlDone.catch(() => undefined);
  const psql = pgProgram(options.pgBin, major, 'psql');
  const query = async (sql: string): Promise<string | undefined> => {
    const pidText = await readFile(join(dir, 'postmaster.pid'), 'utf8').catch(() => '');
    const lines = pidText.split('\n');
    const host = lines[4]?.trim() || lines[5]?.trim() || '127.0.0.1';
    const [program, args] = asOwner(owner, psql, ['-X', '-A', '-t', '-q', '-h', host === '*' ? '127.0.0.1' : host, '-p', String(port), '-U', owner.name, '-d', 'postgres', '-c', sql]);
    const result = await run(program, args, { ...process.env, PGCONNECT_TIMEOUT: '5', TZ: 'UTC' }, options.signal);
    return result.code === 0 ? result.stdout.trim() : undefined;
  };
  const failed = async (): Promise<RecoveryFailedError> => new RecoveryFailedError(
    `RECOVERY FAILED: the restored server in ${dir} stopped before recovery ended (target ${describeTarget(plan.target)})\n  ${await fatalLines(logPath)}`,
    'the target was not reached or WAL is missing: see the server log above; restore again with a target inside the recovery window',
  );
  try {
    let lastReport = Date.now();
    let lastQuery = 0;
    let sawRecovery = false;
    for (;;) {
      throwIfAborted(options.signal);
      if (ctlResult !== undefined && (ctlResult.code !== 0 || (await runningPostmaster(dir)) === undefined)) throw await failed();
      // A psql only when pg_control says recovery is over (or every 100 ms once pg_ctl has returned,
      // in case it never says so). The copied pg_control says "in production" until the startup
      // process rewrites it: that counts only after a recovery state has been seen.
      const state = await clusterState(dir);
      if (state === 'in archive recovery' || state === 'in crash recovery') sawRecovery = true;
      const production = sawRecovery && state === 'in production';
      if (production || (ctlResult !== undefined && Date.now() - lastQuery >= 100)) {
        lastQuery = Date.now();
        if ((await query('select pg_is_in_recovery()')) === 'f') break;
      }
      if (ctlResult !== undefined && Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        options.progress?.(`restore: recovering, replayed up to ${(await query('select pg_last_wal_replay_lsn()')) ?? '?'}`);
      }
      await new Promise((done) => setTimeout(done, production ? 20 : 10));
    }
  } catch (error) {
    // Interrupted: not before pg_ctl is stopped, which waits for postmaster.pid, so that the
    // caller's `pg_ctl stop` sees the server it launched (startServer).
    await ctlDone.catch(() => undefined);
    throw error;
  }
  // pg_ctl has returned or returns within its 100 ms poll: it must not outlive the restore.
  if ((await ctlDone).code !== 0) throw await failed();
  const facts = (await query("select pg_last_wal_replay_lsn() || '|' || coalesce(pg_last_xact_replay_timestamp()::text, '') || '|' || (select timeline_id from pg_control_checkpoint())")) ?? '||';
  const [lsn = '', time = '', timeline = '0'] = facts.split('|');
  const log = await readFile(logPath, 'utf8').catch(() => '');
  const stopLine = /^.*recovery stopping.*$/m.exec(log)?.[0] ?? null;
  const outcome: RecoveryOutcome = { port, reachedLsn: lsn, reachedTime: time === '' ? null : time, timeline: Number(timeline), durationMs: Date.now() - started, stopLine };
  // Rule 6: latest replays at least into the newest archived segment; a target is reached or this fails.
  if (plan.target.kind === 'latest' && plan.reach.to !== null && lsn !== '') {
    const lastSegmentStart = lsnToBigInt(plan.reach.to.lsn) - BigInt(plan.window.segmentSize);
    if (lsnToBigInt(lsn) < lastSegmentStart) {
      throw new RecoveryFailedError(`RECOVERY FAILED: recovery ended at ${lsn}, before the newest archived WAL ${plan.reach.to.wal} (from ${bigIntToLsn(lastSegmentStart)})`, 'a WAL file could not be fetched: check the repository with pgwarden verify and the server log');
    }
  }
  if (plan.target.kind === 'lsn' && lsn !== '' && lsnToBigInt(lsn) < lsnToBigInt(plan.target.lsn)) {
    throw new RecoveryFailedError(`RECOVERY FAILED: recovery ended at ${lsn}, before the target ${plan.target.lsn}`, 'see the server log');
  }
  if ((plan.target.kind === 'time' || plan.target.kind === 'lsn') && stopLine === null) {
    throw new RecoveryFailedError(`RECOVERY FAILED: the server left recovery at ${lsn} without saying it stopped at the target ${describeTarget(plan.target)}`, `see ${logPath}`);
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// The restore

export interface RestoreOptions {
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  /** The arguments after `wal fetch %f %p` in restore_command: --repo DIR and key sources, or --config FILE --cluster NAME (never a key). */
  readonly walFetchArgs: readonly string[];
  /** How to run pgwarden: [node, bin/pgwarden.js]. */
  readonly pgwarden: readonly string[];
  readonly target: RestoreTarget;
  readonly targetDir: string;
  /** The OS user that will own and run the restored cluster (default: the parent dir's owner, else postgres). */
  readonly owner?: string;
  /** Start the server and wait for recovery to end; port undefined: a free one. */
  readonly start?: { readonly port?: number };
  /** Keep the copied archive_mode (the restored server then archives where the source did). */
  readonly keepArchiving?: boolean;
  /** `--tablespace-map OLDDIR=NEWDIR`: a tablespace of the backup at OLDDIR is restored into NEWDIR (else into its location). */
  readonly tablespaceMap?: readonly TablespaceMapping[];
  /** Every tablespace into `<dir>/<oid>` whatever its location (a drill's scratch dir). */
  readonly tablespacesUnder?: string;
  readonly pgBin?: string;
  readonly progress?: (line: string) => void;
  /**
   * Stops the restore when it fires (a drill interrupted by a signal): the programs it waits on
   * (tar, zstd, pg_ctl start, psql) are stopped and restore() rejects with abortError(signal).
   * A server already started keeps running: stopping it is the caller's business.
   */
  readonly signal?: AbortSignal;
}

export interface RestoreResult {
  readonly backupId: string;
  readonly targetDir: string;
  readonly owner: string;
  readonly partsUnpacked: number;
  readonly partsSkipped: number;
  /** Where each tablespace was restored (tablespace_map points there). */
  readonly tablespaces: readonly { readonly name: string; readonly oid: number; readonly dir: string; readonly mapped: boolean }[];
  readonly settings: readonly string[];
  readonly lastCommit?: string;
  readonly recovery?: RecoveryOutcome;
}

/**
 * Stages the WAL recovery reads first (src/backup/wal-staging.ts), beside the unpacking; never
 * fails: where staging stops, restore_command fetches on demand.
 */
async function stage(plan: RestorePlan, options: RestoreOptions, owner: Owner, dir: string): Promise<void> {
  if (plan.target.kind === 'backup') return;
  const names = segmentsToStage({
    backupTimeline: plan.manifest.timeline, stopWal: plan.manifest.stopWal, ranges: plan.reach.ranges, segmentSize: plan.window.segmentSize,
    ...(plan.target.kind === 'lsn' ? { lastSegment: lsnToBigInt(plan.target.lsn) / BigInt(plan.window.segmentSize) } : {}),
  });
  if (names.length === 0) return;
  let result: Awaited<ReturnType<typeof stageWal>>;
  try {
    result = await stageWal(names, { repository: options.repository, keyring: options.keyring, dataDir: dir, owner, signal: options.signal });
  } catch (error) {
    options.progress?.(`restore: no WAL staged for recovery: ${messageOf(error)} (recovery fetches what it needs itself)`);
    return;
  }
  const staged = result.staged.length === 0 ? 'no WAL segment' : `${result.staged.length} WAL segment(s), ${result.staged[0] ?? ''} to ${result.staged.at(-1) ?? ''},`;
  options.progress?.(`restore: ${staged} staged in ${STAGED_WAL_DIR}/ for recovery${result.stoppedAt === undefined ? '' : `; staging stopped at ${result.stoppedAt.name}: ${result.stoppedAt.reason} (recovery fetches it itself, if it needs it)`}`);
}

/** Restores a backup into `targetDir` for `target` (see the file comment). */
export async function restore(options: RestoreOptions): Promise<RestoreResult> {
  const dir = resolve(options.targetDir);
  const owner = await resolveOwner(options.owner, dirname(dir));
  const plan = await planRestore(options.repository, options.keyring, options.target, options.pgBin);
  throwIfAborted(options.signal);
  // Where each tablespace goes, checked before anything is written.
  const refuse = (message: string, fix: string): Error => new RestoreRefusedError(message, fix);
  const targets = tablespaceTargets(plan.manifest, options.tablespaceMap ?? [], options.tablespacesUnder, refuse);
  const earlier = targets.length === 0 ? undefined : await readProgress(dir);
  const resumable = earlier !== undefined && earlier.backupId === plan.manifest.id && earlier.target === describeTarget(plan.target) && earlier.state !== 'started' ? earlier.tablespaceDirs ?? [] : [];
  await checkTablespaceTargets(targets, dir, resumable, refuse);
  options.progress?.(`restore: backup ${plan.manifest.id} (consistent at ${plan.manifest.consistentAt}, ${plan.manifest.objects.length} parts, ${mib(plan.manifest.originalBytes)}) to ${describeTarget(plan.target)}${plan.lastCommit === undefined ? '' : `; last archived commit ${plan.lastCommit}`}`);
  for (const target of targets) options.progress?.(`restore: tablespace ${target.tablespace.name} (oid ${target.tablespace.oid}) into ${target.dir}${target.mapped ? ` (mapped from ${target.tablespace.location})` : ''}`);
  const progress = await prepareTarget(dir, owner, plan.manifest.id, describeTarget(plan.target));
  const recorded: ProgressExtra = targets.length === 0 ? {} : { tablespaceDirs: targets.map((target) => target.dir) };
  let unpacked = { done: 0, skipped: plan.manifest.objects.length };
  if (progress?.state !== 'unpacked') {
    const unpackAll = async (): Promise<{ done: number; skipped: number }> => {
      let count = await unpack(plan, options, owner, dir, progress, { objects: baseObjects(plan.manifest), into: dir, label: '', base: true }, recorded);
      if (targets.length > 0) {
        await pointTablespaces(dir, owner, targets);
        for (const target of targets) {
          await createOwned(target.dir, owner);
          const label = `tablespace ${target.tablespace.name}: `;
          const done = await unpack(plan, options, owner, dir, undefined, { objects: tablespaceObjects(plan.manifest, target.tablespace), into: target.dir, label, base: false }, recorded);
          count = { ...count, done: count.done + done.done };
        }
      }
      return count;
    };
    // On disk before it is recorded as unpacked: tar does not fsync (src/backup/durable.ts).
    // The WAL recovery reads first is staged meanwhile (src/backup/wal-staging.ts).
    unpacked = await durably([dir, ...targets.map((target) => target.dir)], async () => {
      const staging = stage(plan, options, owner, dir);
      try {
        return await unpackAll();
      } finally {
        await staging;
      }
    });
    await writeProgress(dir, owner, { backupId: plan.manifest.id, target: describeTarget(plan.target), state: 'unpacked', partsDone: plan.manifest.objects.length, resumeOffset: plan.manifest.originalBytes, ...recorded });
  }

  const port = options.start === undefined ? undefined : options.start.port ?? (await freeTcpPort());
  const extra: Record<string, string> = {};
  if (options.keepArchiving !== true) extra['archive_mode'] = 'off';
  if (port !== undefined) extra['port'] = String(port);
  if (existsSync(join(dir, STAGED_WAL_DIR))) extra['recovery_end_command'] = STAGED_WAL_CLEANUP;
  const settings = recoverySettings(options.target, restoreCommandLine(options.pgwarden, options.walFetchArgs, localArchiveOf(options.repository, options.walFetchArgs)), extra);
  await writeRecoverySettings(dir, owner, settings, plan);
  options.progress?.(`restore: recovery settings written to ${join(dir, 'postgresql.auto.conf')}, recovery.signal created`);
  const result: RestoreResult = {
    backupId: plan.manifest.id, targetDir: dir, owner: owner.name, partsUnpacked: unpacked.done, partsSkipped: unpacked.skipped, settings,
    tablespaces: targets.map((target) => ({ name: target.tablespace.name, oid: target.tablespace.oid, dir: target.dir, mapped: target.mapped })),
    ...(plan.lastCommit === undefined ? {} : { lastCommit: plan.lastCommit }),
  };
  if (port === undefined) return result;
  await writeProgress(dir, owner, { backupId: plan.manifest.id, target: describeTarget(plan.target), state: 'started', partsDone: plan.manifest.objects.length, resumeOffset: plan.manifest.originalBytes, ...recorded });
  return { ...result, recovery: await startAndWait(plan, options, owner, dir, port) };
}
