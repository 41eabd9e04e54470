/**
 * Continuous WAL streaming (issue 5 item 3): a pg_receivewal child on a replication slot writes WAL
 * into a local spool directory as the server produces it, and every completed file is pushed to
 * every repository with pushWal, then removed from the spool. archive_command only sees a segment
 * once it is full (or archive_timeout forces a switch); the spool holds the seconds-fresh .partial
 * segment, and the slot guarantees the server keeps WAL until pg_receivewal has it.
 *
 * Rules (DESIGN §7): a file leaves the spool only once stored and verified in every repository
 * (rule 1); pushWal refuses different bytes under an archived name and WAL of another cluster
 * (rules 2, 4); a file that cannot be pushed stays in the spool and is retried (rule 3). The
 * password travels in PGPASSWORD, never on the command line (rule 14).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { ConnectionSpec } from '../../config/types.js';
import { redact } from '../../config/redact.js';
import { messageOf } from '../../errors.js';
import { DbSession } from '../../db/session.js';
import type { Keyring, Repository } from '../types.js';
import { pushWal } from './push.js';
import { parseWalFileName, type WalFileName } from './segment.js';
import { libpqEnv } from '../../db/libpq-env.js';

/** The application_name of the streaming connection (pg_stat_replication, synchronous_standby_names). */
export const RECEIVER_APPLICATION = 'pgwarden-receivewal';
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 60_000;
/** A child that streamed this long before exiting restarts after the first back-off again. */
const HEALTHY_RUN_MS = 60_000;
const STOP_GRACE_MS = 10_000;
/** pg_receivewal looks for WAL in the spool to know where to resume; this hidden directory is not WAL. */
const IDENTITY_DIR = '.pgwarden-identity';
const execFileAsync = promisify(execFile);

export type WalReceiverState = 'streaming' | 'restarting' | 'stopped' | 'failed';

export interface WalReceiverOptions {
  readonly connection: ConnectionSpec;
  /** The cluster's name in the config: names the default slot and the log lines. */
  readonly cluster: string;
  /** Default: defaultSlotName(cluster). */
  readonly slot?: string | undefined;
  /** Where pg_receivewal writes; created (mode 0700) when missing. One spool per receiver. */
  readonly spoolDir: string;
  /** Every completed file is pushed to each of them, in order; it leaves the spool only when all hold it. */
  readonly repositories: readonly Repository[];
  readonly keyring?: Keyring | undefined;
  readonly compression?: 'auto' | 'zstd' | 'gzip' | undefined;
  /** The directory holding pg_receivewal; default /usr/lib/postgresql/<server major>/bin, else PATH. */
  readonly pgBin?: string | undefined;
  /** Flush each write and report it at once, so the receiver can be a synchronous standby. */
  readonly synchronous?: boolean | undefined;
  /** Seconds between pg_receivewal's status packets (its --status-interval); default 10. */
  readonly statusIntervalS?: number | undefined;
  /** How often the spool is scanned (fs.watch misses events on some file systems); default 1000. */
  readonly pollMs?: number | undefined;
  /** How often the slot's retained WAL is read from the server; default 10000. */
  readonly slotCheckMs?: number | undefined;
  readonly log?: ((line: string) => void) | undefined;
  readonly onEvent?: ((event: WalReceiverEvent) => void) | undefined;
}

export type WalReceiverEvent =
  | { readonly type: 'started'; readonly pid: number }
  | { readonly type: 'exited'; readonly code: number | null; readonly signal: string | null; readonly error: string | null }
  | { readonly type: 'restart-scheduled'; readonly inMs: number; readonly reason: string }
  | { readonly type: 'pushed'; readonly name: string }
  | { readonly type: 'push-failed'; readonly name: string; readonly error: string; readonly retryInMs: number }
  | { readonly type: 'failed'; readonly error: string }
  | { readonly type: 'stopped' };

export interface WalReceiverStatus {
  readonly state: WalReceiverState;
  /** pg_receivewal's pid while it runs. */
  readonly pid: number | null;
  readonly slot: string;
  /** The newest completed file seen in the spool (pushed or waiting). */
  readonly lastReceivedSegment: string | null;
  /** The newest file stored in every repository. */
  readonly lastPushed: string | null;
  /** Completed files in the spool that are not in every repository yet. */
  readonly waiting: number;
  /**
   * Bytes of the current segment pg_receivewal has written (the server's write_lsn for it), which
   * only the local .partial file holds; null when unknown (not connected, no pg_read_all_stats).
   */
  readonly partialBytes: number | null;
  /** WAL the server keeps for the slot (current position − restart_lsn); null when unknown. */
  readonly retainedBytes: number | null;
  /** pg_replication_slots.wal_status: reserved, extended, unreserved or lost. */
  readonly slotWalStatus: string | null;
  readonly lastError: string | null;
  /** pg_receivewal restarts since start(). */
  readonly restarts: number;
}

/** `pgwarden_<cluster>` made a valid slot name: lower case letters, digits and _, at most 63 bytes. */
export function defaultSlotName(cluster: string): string {
  return `pgwarden_${cluster}`.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 63);
}

/** The next back-off: doubling from 1 s up to 60 s. */
export function nextBackoff(previousMs: number | undefined): number {
  return previousMs === undefined ? FIRST_BACKOFF_MS : Math.min(previousMs * 2, MAX_BACKOFF_MS);
}

/**
 * The spool files that are final, in the order they must be pushed: completed segments and
 * .history files; and a .partial of an older timeline than another file's (pg_receivewal leaves
 * the last segment of a timeline it switched away from as .partial, and nothing more will come to
 * it, as PostgreSQL's archiver does at a promotion). The current .partial and foreign names stay.
 */
export function finalSpoolFiles(names: readonly string[]): WalFileName[] {
  const files = names.map((name) => parseWalFileName(name)).filter((file): file is WalFileName => file !== undefined);
  const newestTimeline = Math.max(0, ...files.map((file) => file.timeline));
  return files
    .filter((file) => file.kind === 'segment' || file.kind === 'history' || (file.kind === 'partial' && file.timeline < newestTimeline))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** libpq's environment for the connection: the password in PGPASSWORD, never in argv (rule 14). */

interface ServerFacts {
  readonly version: number;
  readonly systemIdentifier: string;
  readonly segmentSize: number;
}

/** Streams a cluster's WAL into its repositories through pg_receivewal; one per cluster. */
export class WalReceiver {
  readonly slot: string;
  private state: WalReceiverState = 'stopped';
  private child: ChildProcess | undefined;
  private childExited: Promise<void> | undefined;
  private facts: ServerFacts | undefined;
  private restarts = 0;
  private restartBackoff: number | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private pushBackoff: number | undefined;
  private pushNotBefore = 0;
  private lastSlotCheck = 0;
  private stopping = false;
  private lastReceived: string | null = null;
  private lastPushed: string | null = null;
  private waiting = 0;
  private partialBytes: number | null = null;
  private retainedBytes: number | null = null;
  private slotWalStatus: string | null = null;
  private lastError: string | null = null;
  /** Pushed files kept in the spool as pg_receivewal's resume point (servers before 15). */
  private readonly kept = new Set<string>();

  constructor(private readonly options: WalReceiverOptions) {
    this.slot = options.slot ?? defaultSlotName(options.cluster);
  }

  /** Creates the slot and starts pg_receivewal and the spool poller; a failure to launch is retried, not thrown. */
  async start(): Promise<void> {
    if (this.state === 'streaming' || this.state === 'restarting') return;
    this.stopping = false;
    this.restarts = 0;
    this.restartBackoff = undefined;
    try {
      await mkdir(this.options.spoolDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      this.fail(`cannot create the spool directory ${this.options.spoolDir}: ${messageOf(error)}`);
      return;
    }
    this.state = 'restarting';
    this.schedulePoll();
    await this.launch();
  }

  /**
   * Stops pg_receivewal and pushes what it completed. SIGINT, not SIGTERM: SIGINT is its clean stop
   * on every version (it fsyncs the current file and exits 0), while before PostgreSQL 16 SIGTERM
   * kills it outright. SIGKILL after 10 s.
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.pollTimer);
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.childExited;
      clearTimeout(killer);
    }
    await this.sweeping;
    // One last pass: files completed before the stop go to the repositories now, not at the next start.
    this.pushNotBefore = 0;
    await this.sweep();
    if (this.state !== 'failed') this.state = 'stopped';
    this.emit({ type: 'stopped' });
  }

  status(): WalReceiverStatus {
    return {
      state: this.state,
      pid: this.child?.pid ?? null,
      slot: this.slot,
      lastReceivedSegment: this.lastReceived,
      lastPushed: this.lastPushed,
      waiting: this.waiting,
      partialBytes: this.partialBytes,
      retainedBytes: this.retainedBytes,
      slotWalStatus: this.slotWalStatus,
      lastError: this.lastError,
      restarts: this.restarts,
    };
  }

  private log(line: string): void {
    this.options.log?.(`wal receiver ${this.options.cluster}: ${line}`);
  }

  private emit(event: WalReceiverEvent): void {
    this.options.onEvent?.(event);
  }

  private secrets(): string[] {
    return this.options.connection.password === undefined ? [] : [this.options.connection.password];
  }

  private fail(error: string): void {
    this.state = 'failed';
    this.lastError = error;
    this.log(`failed: ${error}`);
    this.emit({ type: 'failed', error });
  }

  private program(): string {
    const dir = this.options.pgBin ?? (this.facts === undefined ? undefined : `/usr/lib/postgresql/${Math.floor(this.facts.version / 10000)}/bin`);
    if (dir === undefined) return 'pg_receivewal';
    const path = join(dir, 'pg_receivewal');
    return existsSync(path) || this.options.pgBin !== undefined ? path : 'pg_receivewal';
  }

  private connectionArgs(): string[] {
    // -w: never prompt; the password, if any, is in the environment.
    return ['-w', '--slot', this.slot];
  }

  /** One launch attempt: server facts, the slot, then the streaming child; a failure schedules the next. */
  private async launch(): Promise<void> {
    if (this.stopping) return;
    try {
      this.facts ??= await this.readFacts();
      await this.writeIdentity(this.facts);
      await this.clearInterruptedPadding(this.facts.segmentSize);
      await this.createSlot();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        this.fail(`${this.program()} is not installed: ${messageOf(error)}; install the PostgreSQL client programs or set pgBin`);
        return;
      }
      this.scheduleRestart(redact(messageOf(error), this.secrets()));
      return;
    }
    if (this.stopping) return;
    const args = ['--directory', this.options.spoolDir, ...this.connectionArgs(), '--status-interval', String(this.options.statusIntervalS ?? 10)];
    if (this.options.synchronous === true) args.push('--synchronous');
    const child = spawn(this.program(), args, { env: libpqEnv(this.options.connection, RECEIVER_APPLICATION), stdio: ['ignore', 'ignore', 'pipe'] });
    const startedAt = Date.now();
    this.child = child;
    let lastLine = '';
    if (child.stderr !== null) {
      // Whole lines: a message can arrive in several chunks.
      createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => {
        if (line.trim() === '') return;
        lastLine = redact(line.trim(), this.secrets());
        // It retries a lost connection by itself, still running: its errors must show in the status.
        if (/\berror:/.test(lastLine)) this.lastError = lastLine;
        this.log(lastLine);
      });
    }
    // A spawn failure may emit 'error' without 'close'; either way the exit is handled once.
    let finished = false;
    let exited!: () => void;
    this.childExited = new Promise((resolve) => {
      exited = resolve;
    });
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError: Error | undefined): void => {
      if (finished) return;
      finished = true;
      this.child = undefined;
      this.partialBytes = null;
      const error = spawnError !== undefined ? messageOf(spawnError) : code === 0 && signal === null ? null : lastLine || null;
      this.emit({ type: 'exited', code, signal, error });
      exited();
      if (this.stopping) return;
      if ((spawnError as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
        this.fail(`${this.program()} is not installed; install the PostgreSQL client programs or set pgBin`);
        return;
      }
      if (Date.now() - startedAt >= HEALTHY_RUN_MS) this.restartBackoff = undefined;
      this.scheduleRestart(`pg_receivewal ended (${signal ?? `exit ${code}`})${error === null ? '' : `: ${error}`}`);
    };
    child.on('error', (error) => {
      if (child.pid === undefined) finish(null, null, error);
    });
    child.on('close', (code, signal) => finish(code, signal, undefined));
    if (child.pid !== undefined) {
      this.state = 'streaming';
      this.log(`pg_receivewal started (pid ${child.pid}) on slot ${this.slot}`);
      this.emit({ type: 'started', pid: child.pid });
    }
  }

  private scheduleRestart(reason: string): void {
    if (this.stopping) return;
    this.state = 'restarting';
    this.lastError = reason;
    this.restartBackoff = nextBackoff(this.restartBackoff);
    const inMs = this.restartBackoff;
    this.log(`${reason}; restarting in ${inMs / 1000} s`);
    this.emit({ type: 'restart-scheduled', inMs, reason });
    this.restartTimer = setTimeout(() => {
      this.restarts++;
      void this.launch();
    }, inMs);
  }

  private async readFacts(): Promise<ServerFacts> {
    const session = await DbSession.open(this.options.connection, RECEIVER_APPLICATION);
    try {
      const [row] = await session.query({
        text: `select current_setting('server_version_num')::int as version,
          (select system_identifier::text from pg_control_system()) as sysid,
          (select setting::int from pg_settings where name = 'wal_segment_size') as segsize`,
      });
      return { version: Number(row?.['version']), systemIdentifier: String(row?.['sysid']), segmentSize: Number(row?.['segsize']) };
    } finally {
      await session.close();
    }
  }

  /**
   * pushWal identifies a .history file (which has no page header) by the pg_control of a data
   * directory, and this host may have none: a stand-in holding the server's system identifier
   * (pg_control's first field) and PG_VERSION lets it check the archive's owner all the same.
   */
  private async writeIdentity(facts: ServerFacts): Promise<void> {
    const dir = join(this.options.spoolDir, IDENTITY_DIR);
    await mkdir(join(dir, 'global'), { recursive: true, mode: 0o700 });
    const control = Buffer.alloc(8);
    control.writeBigUInt64LE(BigInt(facts.systemIdentifier));
    await writeFile(join(dir, 'global', 'pg_control'), control);
    await writeFile(join(dir, 'PG_VERSION'), `${Math.floor(facts.version / 10000)}\n`);
  }

  /**
   * pg_receivewal fills a new .partial with zeros to the full segment size before it writes WAL
   * into it. Killed in the middle of that, it leaves a shorter file, and every later start fails
   * with "has N bytes, should be 0 or 16777216". Such a file holds no WAL: it is removed when it
   * is all zeros (streaming then resumes where the slot or the previous segment ends), and left
   * alone, with the error shown, when it is not.
   */
  private async clearInterruptedPadding(segmentSize: number): Promise<void> {
    for (const name of await readdir(this.options.spoolDir)) {
      if (parseWalFileName(name)?.kind !== 'partial') continue;
      const path = join(this.options.spoolDir, name);
      const bytes = await readFile(path);
      if (bytes.length === 0 || bytes.length === segmentSize) continue;
      if (bytes.some((byte) => byte !== 0)) {
        throw new Error(`${path} is ${bytes.length} bytes, not a whole segment, and holds WAL: pg_receivewal cannot resume from it; copy it aside for inspection, then remove it`);
      }
      await unlink(path);
      this.log(`removed ${name}: pg_receivewal was stopped while preparing it (${bytes.length} bytes of zeros, no WAL)`);
    }
  }

  /** pg_receivewal --create-slot --if-not-exists, its own invocation (the streaming one must not create it). */
  private async createSlot(): Promise<void> {
    try {
      await execFileAsync(this.program(), ['--create-slot', '--if-not-exists', ...this.connectionArgs()], { env: libpqEnv(this.options.connection, RECEIVER_APPLICATION), timeout: 60_000 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw error;
      const output = (error as { stderr?: unknown }).stderr;
      const stderr = typeof output === 'string' ? output.trim() : '';
      throw new Error(`cannot create the replication slot ${this.slot}: ${stderr.split('\n').pop() || messageOf(error)}`, { cause: error });
    }
  }

  private schedulePoll(): void {
    if (this.stopping) return;
    this.pollTimer = setTimeout(() => {
      this.sweeping = this.poll().finally(() => {
        this.sweeping = undefined;
        this.schedulePoll();
      });
    }, this.options.pollMs ?? 1000);
  }

  private async poll(): Promise<void> {
    await this.sweep();
    if (Date.now() - this.lastSlotCheck >= (this.options.slotCheckMs ?? 10_000)) {
      this.lastSlotCheck = Date.now();
      await this.checkSlot();
    }
  }

  /** Pushes the spool's final files in order; stops at the first failure so the repositories stay contiguous. */
  private async sweep(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.options.spoolDir);
    } catch (error) {
      this.lastError = `cannot read the spool ${this.options.spoolDir}: ${messageOf(error)}`;
      return;
    }
    const files = finalSpoolFiles(names);
    const segments = files.filter((file) => file.kind === 'segment');
    this.lastReceived = segments[segments.length - 1]?.name ?? this.lastReceived;
    const pending = files.filter((file) => !this.kept.has(file.name));
    this.waiting = pending.length;
    if (pending.length === 0 || Date.now() < this.pushNotBefore) return;
    for (const file of pending) {
      const path = join(this.options.spoolDir, file.name);
      try {
        for (const repository of this.options.repositories) {
          await pushWal(path, {
            repository,
            keyring: this.options.keyring,
            compression: this.options.compression,
            dataDirectory: join(this.options.spoolDir, IDENTITY_DIR),
          });
        }
      } catch (error) {
        const message = `cannot push ${file.name}: ${messageOf(error)}`;
        this.pushBackoff = nextBackoff(this.pushBackoff);
        this.pushNotBefore = Date.now() + this.pushBackoff;
        this.lastError = message;
        this.log(`${message}; it stays in the spool, retrying in ${this.pushBackoff / 1000} s`);
        this.emit({ type: 'push-failed', name: file.name, error: messageOf(error), retryInMs: this.pushBackoff });
        return;
      }
      this.pushBackoff = undefined;
      this.lastPushed = file.name;
      this.waiting--;
      this.emit({ type: 'pushed', name: file.name });
      try {
        await this.release(file, segments[segments.length - 1]?.name);
      } catch (error) {
        // Stored everywhere already: a file that cannot be removed is only retried (an idempotent push).
        this.lastError = `cannot remove ${file.name} from the spool: ${messageOf(error)}`;
        this.log(this.lastError);
      }
    }
  }

  /**
   * Removes a pushed file from the spool. Before PostgreSQL 15, pg_receivewal in an empty spool
   * starts at the server's current position, not at the slot's, and would skip WAL: there the
   * newest pushed segment stays as its resume point until a newer one takes its place.
   */
  private async release(file: WalFileName, newestSegment: string | undefined): Promise<void> {
    const keep = this.facts !== undefined && this.facts.version < 150000 && file.name === newestSegment;
    const remove = keep ? [...this.kept] : [file.name];
    if (keep) {
      this.kept.clear();
      this.kept.add(file.name);
    }
    for (const name of remove) {
      await unlink(join(this.options.spoolDir, name)).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      });
    }
  }

  /** Reads what the slot retains and how far the current segment is written. */
  private async checkSlot(): Promise<void> {
    let session: DbSession | undefined;
    try {
      session = await DbSession.open(this.options.connection, RECEIVER_APPLICATION);
      const [row] = await session.query({
        text: `select s.wal_status,
            ((case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_lsn() end) - s.restart_lsn)::text as retained,
            (select r.write_lsn - '0/0'::pg_lsn from pg_stat_replication r where r.pid = s.active_pid)::text as written
          from pg_replication_slots s where s.slot_name = $1`,
        values: [this.slot],
      });
      this.slotWalStatus = row === undefined ? null : (row['wal_status'] as string | null);
      this.retainedBytes = row?.['retained'] == null ? null : Number(row['retained']);
      const written = row?.['written'];
      const segmentSize = this.facts?.segmentSize;
      this.partialBytes = typeof written === 'string' && segmentSize !== undefined ? Number(BigInt(written.split('.')[0] ?? '0') % BigInt(segmentSize)) : null;
    } catch (error) {
      this.log(`cannot read slot ${this.slot}: ${redact(messageOf(error), this.secrets())}`);
    } finally {
      await session?.close();
    }
  }
}
