/**
 * Restore drills (issue 5 item 10; docs/drills.md): a backup is only as good as a restore that
 * was tried. A drill restores the latest backup into a scratch directory, starts it, checks what
 * it got, records the outcome in the repository (`drills/<id>.json`), and removes the copy.
 *
 * 1. On the source (when one is given): in one REPEATABLE READ transaction, a restore point
 *    (pg_create_restore_point) and then the row count of each configured table, all read from
 *    the snapshot taken as the restore point is written; then a WAL switch so that the segment
 *    holding the restore point is archived, awaited in the repository (with a timeout).
 * 2. restore() of the newest backup into `<targetDir>/<drill id>`, started on a free port, with
 *    recovery to the restore point's LSN (or to latest without a source). Unpacking and recovery
 *    are timed: that is how long a real restore of this size takes.
 * 3. Checks on the restored server: pg_amcheck on every database (heap and B-tree indexes), the
 *    tables' row counts against the source's, the cluster's custom SQL checks (health.sql).
 * 4. A DrillRecord in the repository, passed or failed (a failed drill is recorded with its reason).
 * 5. In every case (finally): the restored server stopped, its directory removed unless kept.
 *
 * A backup with tablespaces is restored with every tablespace in `<targetDir>/<drill id>-tablespaces/<oid>`
 * (tablespace_map rewritten to point there), never in their live locations; removed with the copy.
 *
 * The restored server is queried with psql run as its owner through its socket, as restore()
 * does: the copy keeps the source's pg_hba.conf, whose local peer rule admits the owner.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { setTimeout as delay } from 'node:timers/promises';
import type { ConnectionSpec } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError, isUserError, messageOf } from '../errors.js';
import { readCatalog } from './catalog.js';
import { abortError, freeTcpPort, resolveOwner, restore, terminateOnAbort, throwIfAborted, timestampMicros, type Owner, type RestoreTarget } from './restore.js';
import type { Keyring, Repository } from './types.js';
import { findArchived } from './wal/archive.js';
import { parseWalFileName } from './wal/segment.js';
import { recoveryWindow } from './window.js';

/** Where drill records live in a repository. */
export const DRILLS_PREFIX = 'drills/';
/** How long a drill waits for the restore point's WAL to reach the repository, by default. */
export const DEFAULT_ARCHIVE_WAIT_MS = 120_000;
/** The application_name of the drill's session on the source. */
const SOURCE_APPLICATION = 'pgwarden drill';
const TABLE_PATTERN = /^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$/;

export interface DrillCheck {
  /** "restore point", "restore", "pg_amcheck", "rows public.orders", "sql <name>". */
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** What `drills/<id>.json` holds. */
export interface DrillRecord {
  readonly format: 1;
  /** Sortable and unique: "20261127T183000Z-drill-3f9a". */
  readonly id: string;
  readonly cluster: string;
  /** The backup restored; null when the drill failed before choosing one. */
  readonly backupId: string | null;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** What recovery aimed at: "restore point pgwarden-drill-<id> (0/3000120)" or "latest". */
  readonly target: string;
  /** Unpacking plus recovery, measured; null when the restore did not finish. */
  readonly restoreSeconds: number | null;
  /** The commit time of the last transaction replayed (ISO), or null when none was replayed. */
  readonly recoveredTo: string | null;
  /** startedAt minus recoveredTo: the data a real disaster at the drill's start would have lost. */
  readonly dataLossWindowSeconds: number | null;
  readonly checks: readonly DrillCheck[];
  readonly ok: boolean;
  /** Why it failed: the first failed check's name and detail; null when ok. */
  readonly reason: string | null;
}

/** A custom SQL check as the drill runs it on the restored copy (from health.sql). */
export interface DrillSqlCheck {
  readonly name: string;
  readonly database: string;
  readonly query: string;
  readonly warning: number;
  readonly critical: number;
  readonly direction: 'above' | 'below';
  readonly timeoutMs: number;
}

export interface DrillOptions {
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  /** The arguments after `wal fetch %f %p` of the restored server's restore_command. */
  readonly walFetchArgs: readonly string[];
  /** How to run pgwarden: [node, bin/pgwarden.js]. */
  readonly pgwarden: readonly string[];
  /** The cluster's name for the record; undefined: the backup's source cluster. */
  readonly cluster?: string;
  /** The source server: without it there is no restore point, recovery goes to latest and counts are not compared. */
  readonly source?: ConnectionSpec;
  /** The database the tables are in (default: the source's, else postgres). */
  readonly database?: string;
  /** "schema.table" names, taken exactly as written (quoted). */
  readonly tables: readonly string[];
  readonly sqlChecks: readonly DrillSqlCheck[];
  /** The parent of the drill's directory (created when missing). */
  readonly targetDir: string;
  /** The OS user that owns and runs the restored copy (default postgres). */
  readonly owner?: string;
  /** Keep the restored directory (the server is stopped all the same). */
  readonly keep?: boolean;
  /** pg_amcheck --heapallindexed: every heap tuple must be found in each index (slower). */
  readonly heapAllIndexed?: boolean;
  readonly archiveWaitMs?: number;
  readonly pgBin?: string;
  readonly progress?: (line: string) => void;
  /**
   * Interrupts the drill (pgwarden drill on SIGTERM, SIGINT, SIGHUP): the programs it waits on are
   * stopped, the clean-up runs as always, and the drill is recorded as failed with the reason
   * "<step>: interrupted by <reason> before the checks finished". Abort it with the signal's name
   * as its reason ("SIGTERM"); an Error reason is used as it is.
   */
  readonly signal?: AbortSignal;
}

/** Nothing to drill: the repository holds no restorable backup (usage-level: exit 2). */
export class NothingToDrillError extends UserError {}

/** Throws a UserError unless `name` is "schema.table" with plain identifiers. */
export function checkTableName(name: string): void {
  if (!TABLE_PATTERN.test(name)) throw new UserError(`"${name}" is not a schema-qualified table name`, 'write it as schema.table, e.g. public.orders');
}

/** "public.orders" → "public"."orders": the names are taken exactly as written. */
export function quoteTable(name: string): string {
  return name.split('.').map((part) => `"${part.replace(/"/g, '""')}"`).join('.');
}

/** A new drill id for `at`: its UTC time, then random hex so two drills in a second differ. */
export function drillId(at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-drill-${randomBytes(2).toString('hex')}`;
}

/** ok / warning / critical of a custom check's value, as the custom-sql health check grades it. */
export function sqlLevel(check: Pick<DrillSqlCheck, 'warning' | 'critical' | 'direction'>, value: number): 'ok' | 'warning' | 'critical' {
  if (check.direction === 'below') return value <= check.critical ? 'critical' : value <= check.warning ? 'warning' : 'ok';
  return value >= check.critical ? 'critical' : value >= check.warning ? 'warning' : 'ok';
}

/** Records of psql --csv output: an unquoted empty field is NULL (null), a quoted one "". */
export function parseCsv(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let i = 0;
  while (i < text.length) {
    let field: string | null;
    if (text[i] === '"') {
      let value = '';
      i += 1;
      for (;;) {
        const close = text.indexOf('"', i);
        if (close === -1) throw new Error('unterminated quoted CSV field');
        value += text.slice(i, close);
        i = close + 1;
        if (text[i] !== '"') break;
        value += '"';
        i += 1;
      }
      field = value;
    } else {
      const end = text.slice(i).search(/[,\n]/);
      const raw = end === -1 ? text.slice(i) : text.slice(i, i + end);
      i += raw.length;
      field = raw.replace(/\r$/, '') === '' ? null : raw.replace(/\r$/, '');
    }
    row.push(field);
    if (text[i] === ',') {
      i += 1;
      continue;
    }
    rows.push(row);
    row = [];
    if (text[i] === '\n') i += 1;
  }
  return rows;
}

function describeError(error: unknown): string {
  if (isUserError(error)) return error.hint === undefined ? error.message : `${error.message} (${error.hint})`;
  return messageOf(error);
}

// ---------------------------------------------------------------------------------------------
// Running programs as the owner

interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to its end; when `signal` fires, the program is stopped and this rejects once it has exited. */
function run(command: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env, signal?: AbortSignal): Promise<RunResult> {
  return new Promise((done, fail) => {
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const forget = terminateOnAbort(child, signal);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => fail(error.code === 'ENOENT' ? new UserError(`the ${command} program is not installed`, 'install the PostgreSQL server package of the backup\'s version') : error));
    child.on('close', (code) => {
      forget();
      if (signal?.aborted === true) fail(abortError(signal));
      else done({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/**
 * `work`, or a rejection as soon as `signal` fires. The work itself goes on to its end in the
 * background: only for steps that leave nothing to clean up (a session on the source).
 */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  return new Promise((done, fail) => {
    const stop = (): void => fail(abortError(signal));
    if (signal.aborted) stop();
    signal.addEventListener('abort', stop, { once: true });
    work.then(done, fail).finally(() => signal.removeEventListener('abort', stop)).catch(() => undefined);
  });
}

/** [program, args] running `program` as `owner` (through runuser when we are root and they are not us). */
function asOwner(owner: Owner, program: string, args: readonly string[]): [string, string[]] {
  if ((process.getuid?.() ?? -1) === owner.uid) return [program, [...args]];
  return ['runuser', ['-u', owner.name, '--', program, ...args]];
}

function pgProgram(pgBin: string | undefined, major: number, name: string): string {
  const dir = pgBin ?? `/usr/lib/postgresql/${major}/bin`;
  return existsSync(join(dir, name)) ? join(dir, name) : name;
}

/** The restored server, as its owner reaches it. */
interface Restored {
  readonly dir: string;
  readonly owner: Owner;
  readonly port: number;
  readonly major: number;
  readonly pgBin: string | undefined;
  /** The drill's signal: stops psql and pg_amcheck when the drill is interrupted. */
  readonly signal: AbortSignal | undefined;
}

/** The socket directory (or listen address) in postmaster.pid. */
async function hostOf(dir: string): Promise<string> {
  const lines = (await readFile(join(dir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
  const socket = lines[4]?.trim() ?? '';
  const listen = (lines[5]?.trim() ?? '').split(',')[0]?.trim() ?? '';
  if (socket !== '') return socket;
  return listen === '' || listen === '*' ? '127.0.0.1' : listen;
}

/** Runs one statement through psql on the restored server; its CSV result, or an Error with psql's message. */
async function psqlCsv(server: Restored, database: string, sql: string, pgOptions = ''): Promise<(string | null)[][]> {
  const host = await hostOf(server.dir);
  const [program, args] = asOwner(server.owner, pgProgram(server.pgBin, server.major, 'psql'), [
    '-X', '-q', '--csv', '-v', 'ON_ERROR_STOP=1', '-h', host, '-p', String(server.port), '-U', server.owner.name, '-d', database, '-c', sql,
  ]);
  const result = await run(program, args, { ...process.env, PGCONNECT_TIMEOUT: '10', TZ: 'UTC', PGOPTIONS: pgOptions }, server.signal);
  if (result.code !== 0) {
    // psql's first line says it ("ERROR:  relation … does not exist"); the LINE/caret lines do not.
    const first = result.stderr.split('\n').map((line) => line.trim()).find((line) => line !== '') ?? '';
    throw new Error(first.replace(/^psql:\s*/, '').replace(/^(ERROR|FATAL):\s+/, '') || `psql exited ${result.code ?? '?'}`);
  }
  return parseCsv(result.stdout);
}

// ---------------------------------------------------------------------------------------------
// The steps

/** A table's row count on the source at the restore point, or why it could not be counted. */
type SourceCount = { readonly count: number } | { readonly error: string };

function textOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** On the source: the restore point, the counts in its snapshot, then a WAL switch. */
async function markSource(source: ConnectionSpec, tables: readonly string[], pointName: string): Promise<{ lsn: string; wal: string; counts: Map<string, SourceCount> }> {
  const session = await DbSession.open(source, SOURCE_APPLICATION);
  try {
    await session.script('begin isolation level repeatable read');
    // The snapshot is taken by this first statement, just before the restore point is written:
    // the counts below see exactly what recovery to the restore point replays, but for a commit
    // that lands in the microseconds between the two (docs/drills.md).
    const [point] = await session.query({ text: 'select pg_create_restore_point($1)::text as lsn', values: [pointName] });
    const counts = new Map<string, SourceCount>();
    for (const table of tables) {
      // A table that cannot be counted fails its own check, not the drill's restore point.
      await session.script('savepoint pgwarden_count');
      try {
        const [row] = await session.query({ text: `select count(*)::text as n from ${quoteTable(table)}` });
        counts.set(table, { count: Number(textOf(row?.['n'])) });
        await session.script('release savepoint pgwarden_count');
      } catch (error) {
        counts.set(table, { error: messageOf(error) });
        await session.script('rollback to savepoint pgwarden_count');
      }
    }
    await session.script('commit');
    const lsn = textOf(point?.['lsn']);
    // The switch archives the segment now rather than when it fills up or archive_timeout passes.
    // Its record follows the restore point: recovery to the restore point's end stops on it, so
    // the segment it ends (which holds both) is the one the repository must have.
    const [switched] = await session.query({ text: 'select pg_walfile_name(pg_switch_wal()) as wal' });
    return { lsn, wal: textOf(switched?.['wal']), counts };
  } finally {
    await session.close();
  }
}

/** Waits until `wal` is in the repository; throws after `timeoutMs`, or when `signal` fires. */
async function waitArchived(repository: Repository, wal: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<number> {
  const file = parseWalFileName(wal);
  if (file === undefined) throw new Error(`not a WAL file name: ${wal}`);
  const started = Date.now();
  for (;;) {
    throwIfAborted(signal);
    if ((await findArchived(repository, file)).length > 0) return (Date.now() - started) / 1000;
    if (Date.now() - started > timeoutMs) {
      throw new UserError(
        `WAL ${wal}, which holds the restore point, did not reach ${repository.description} within ${Math.round(timeoutMs / 1000)} s`,
        'check archiving on the source: archive_command (pgwarden wal push), pg_stat_archiver.failed_count and the server log',
      );
    }
    await delay(500, undefined, signal === undefined ? {} : { signal }).catch(() => undefined);
  }
}

/** pg_amcheck on every database of the restored copy (amcheck installed there if missing). */
async function amcheck(server: Restored, heapAllIndexed: boolean): Promise<DrillCheck> {
  const host = await hostOf(server.dir);
  const [program, args] = asOwner(server.owner, pgProgram(server.pgBin, server.major, 'pg_amcheck'), [
    '-h', host, '-p', String(server.port), '-U', server.owner.name, '--all', '--install-missing', ...(heapAllIndexed ? ['--heapallindexed'] : []),
  ]);
  const result = await run(program, args, { ...process.env, PGCONNECT_TIMEOUT: '10' }, server.signal);
  const name = 'pg_amcheck';
  if (result.code === 0) return { name, ok: true, detail: `no corruption found in the heap and B-tree indexes of every database${heapAllIndexed ? ' (with --heapallindexed)' : ''}` };
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const shown = lines.slice(0, 5).join(' | ') + (lines.length > 5 ? ` | … (${lines.length - 5} more lines)` : '');
  // Exit 2: corruption found; anything else: pg_amcheck could not run the checks.
  return { name, ok: false, detail: result.code === 2 ? `corruption found: ${shown}` : `pg_amcheck failed (exit ${result.code ?? '?'}): ${shown}` };
}

async function countTable(server: Restored, database: string, table: string, source: SourceCount | undefined): Promise<DrillCheck> {
  const name = `rows ${table}`;
  const onSource = source === undefined ? '' : 'error' in source ? `; on the source it could not be counted either: ${source.error}` : `; ${source.count} rows on the source at the restore point`;
  let restored: number;
  try {
    const rows = await psqlCsv(server, database, `select count(*) from ${quoteTable(table)}`);
    restored = Number(rows[1]?.[0]);
  } catch (error) {
    return { name, ok: false, detail: `cannot count it on the restored copy: ${messageOf(error)}${onSource}` };
  }
  if (source === undefined) return { name, ok: true, detail: `${restored} rows restored (no source to compare with)` };
  if ('error' in source) return { name, ok: false, detail: `${restored} rows restored, but it could not be counted on the source: ${source.error}` };
  return restored === source.count
    ? { name, ok: true, detail: `${restored} rows, as on the source at the restore point` }
    : { name, ok: false, detail: `${restored} rows restored${onSource}` };
}

async function sqlCheck(server: Restored, check: DrillSqlCheck): Promise<DrillCheck> {
  const name = `sql ${check.name}`;
  try {
    // Read-only with a timeout, as the health check runs it; psql -c sends a single statement.
    const rows = await psqlCsv(server, check.database, check.query, `-c default_transaction_read_only=on -c statement_timeout=${check.timeoutMs}`);
    const [header, first] = rows;
    if (header === undefined || header.length === 0) return { name, ok: false, detail: 'the query returned no column' };
    if (first === undefined) return { name, ok: false, detail: 'the query returned no row' };
    const text = first[0];
    const value = text === null || text === undefined ? Number.NaN : Number(text);
    if (!Number.isFinite(value)) return { name, ok: false, detail: `its first column is ${text === null ? 'NULL' : JSON.stringify(text)}, not a number` };
    const level = sqlLevel(check, value);
    const sign = check.direction === 'below' ? '≤' : '≥';
    const levels = `warning ${sign} ${check.warning}, critical ${sign} ${check.critical}`;
    // A drill fails on critical only: a warning level may simply reflect the copy's age (no new orders).
    return { name, ok: level !== 'critical', detail: `returned ${value} on ${check.database} (${level}; ${levels})` };
  } catch (error) {
    return { name, ok: false, detail: `failed on ${check.database}: ${messageOf(error)}` };
  }
}

/** Stops the restored server if it runs (fast, then immediate). */
async function stopServer(dir: string, owner: Owner, pgBin: string | undefined, major: number): Promise<void> {
  if (!existsSync(join(dir, 'postmaster.pid'))) return;
  const ctl = pgProgram(pgBin, major, 'pg_ctl');
  for (const mode of ['fast', 'immediate']) {
    const [program, args] = asOwner(owner, ctl, ['stop', '-D', dir, '-m', mode, '-w', '-t', '60', '-s']);
    const result = await run(program, args);
    if (result.code === 0 || !existsSync(join(dir, 'postmaster.pid'))) return;
  }
}

/** The parent directory, created (and given to the owner when we are root) if missing. */
async function prepareParent(dir: string, owner: Owner): Promise<void> {
  if (existsSync(dir)) return;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if ((process.getuid?.() ?? -1) === 0) await chown(dir, owner.uid, owner.gid);
}

/** "2026-11-27 19:03:00.123456+00" (PostgreSQL, UTC) → ISO with milliseconds, or null. */
function isoOf(text: string | null | undefined): { iso: string; micros: bigint } | null {
  if (text === null || text === undefined || text === '') return null;
  const micros = timestampMicros(text);
  return micros === undefined ? null : { iso: new Date(Number(micros / 1000n)).toISOString(), micros };
}

// ---------------------------------------------------------------------------------------------
// The drill

/** Runs one drill (see the file comment) and records it; throws only NothingToDrillError and usage-level UserErrors. */
export async function runDrill(options: DrillOptions): Promise<DrillRecord> {
  const startedAt = new Date();
  const id = drillId(startedAt);
  const progress = (line: string): void => options.progress?.(`drill: ${line}`);
  const catalog = await readCatalog(options.repository, options.keyring === undefined ? {} : { keyring: options.keyring });
  const restorable = recoveryWindow(catalog).backups.filter((backup) => backup.restorable);
  const newest = restorable[restorable.length - 1];
  const newestManifest = catalog.backups.find((backup) => backup.manifest.id === newest?.id)?.manifest;
  if (newest === undefined || newestManifest === undefined) {
    throw new NothingToDrillError(`${options.repository.description} holds no restorable backup: nothing to drill`, 'take a backup first (pgwarden backup); pgwarden backups list shows what the repository holds');
  }
  for (const table of options.tables) checkTableName(table);
  const owner = await resolveOwner(options.owner ?? 'postgres', options.targetDir);
  const parent = resolve(options.targetDir);
  const dir = join(parent, id);
  const tablespacesDir = join(parent, `${id}-tablespaces`);
  const major = newestManifest.pgVersion;
  const database = options.database ?? options.source?.database ?? 'postgres';
  const cluster = options.cluster ?? newestManifest.source.cluster;
  const signal = options.signal;
  const checks: DrillCheck[] = [];
  /** The failed check that records an interruption: the drill's reason whatever else failed. */
  let interruption: DrillCheck | undefined;
  let backupId: string | null = null;
  let restoreSeconds: number | null = null;
  let recovered: { iso: string; micros: bigint } | null = null;
  let targetText = 'latest';
  let step = 'restore point';
  progress(`${id}: cluster ${cluster}, repository ${options.repository.description}`);
  try {
    let target: RestoreTarget = { kind: 'latest' };
    let sourceCounts: Map<string, SourceCount> | undefined;
    if (options.source !== undefined) {
      const pointName = `pgwarden-drill-${id}`;
      progress(`restore point ${pointName} on the source${options.tables.length === 0 ? '' : `, counting ${options.tables.join(', ')} at it`}`);
      const point = await unlessAborted(markSource(options.source, options.tables, pointName), signal);
      sourceCounts = point.counts;
      target = { kind: 'lsn', lsn: point.lsn };
      targetText = `restore point ${pointName} (${point.lsn})`;
      progress(`waiting for WAL ${point.wal} in the repository`);
      const waited = await waitArchived(options.repository, point.wal, options.archiveWaitMs ?? DEFAULT_ARCHIVE_WAIT_MS, signal);
      checks.push({ name: 'restore point', ok: true, detail: `${pointName} at ${point.lsn}; WAL ${point.wal} archived ${waited.toFixed(1)} s later` });
    }

    step = 'restore';
    throwIfAborted(signal);
    await prepareParent(parent, owner);
    const port = await freeTcpPort();
    progress(`restoring the latest backup (${newest.id}) into ${dir} on port ${port}, to ${targetText}`);
    const began = performance.now();
    const result = await restore({
      repository: options.repository, keyring: options.keyring, walFetchArgs: options.walFetchArgs, pgwarden: options.pgwarden,
      target, targetDir: dir, owner: owner.name, start: { port }, tablespacesUnder: tablespacesDir,
      ...(options.pgBin === undefined ? {} : { pgBin: options.pgBin }),
      ...(signal === undefined ? {} : { signal }),
      progress: (line) => options.progress?.(`drill: ${line}`),
    });
    restoreSeconds = (performance.now() - began) / 1000;
    backupId = result.backupId;
    const outcome = result.recovery;
    if (outcome === undefined) throw new Error('the restored server was not started');
    recovered = isoOf(outcome.reachedTime);
    checks.push({
      name: 'restore', ok: true,
      detail: `backup ${result.backupId} restored and recovered in ${restoreSeconds.toFixed(1)} s; replayed to ${outcome.reachedLsn}, last commit ${recovered?.iso ?? 'none replayed'}`,
    });
    const server: Restored = { dir, owner, port, major, pgBin: options.pgBin, signal };
    // A check whose program was stopped by the interruption is not recorded as a result.
    const addCheck = (check: DrillCheck): void => {
      throwIfAborted(signal);
      checks.push(check);
    };

    step = 'pg_amcheck';
    throwIfAborted(signal);
    progress(`pg_amcheck --all${options.heapAllIndexed === true ? ' --heapallindexed' : ''} on port ${port}`);
    addCheck(await amcheck(server, options.heapAllIndexed === true));

    step = 'row counts';
    for (const table of options.tables) {
      progress(`counting ${table} on the restored copy`);
      addCheck(await countTable(server, database, table, sourceCounts?.get(table)));
    }
    step = 'custom SQL checks';
    for (const check of options.sqlChecks) {
      progress(`custom SQL check ${check.name} on the restored copy`);
      addCheck(await sqlCheck(server, check));
    }
  } catch (error) {
    if (signal?.aborted === true) {
      interruption = { name: step, ok: false, detail: `${abortError(signal).message} before the checks finished` };
      checks.push(interruption);
      progress(`${abortError(signal).message} during ${step}: stopping the restored server${options.keep === true ? '' : `, removing ${dir}`}, recording the drill as failed`);
    } else {
      checks.push({ name: step, ok: false, detail: describeError(error) });
    }
  } finally {
    await stopServer(dir, owner, options.pgBin, major).catch((error: unknown) => progress(`could not stop the server in ${dir}: ${messageOf(error)}`));
    if (options.keep === true) {
      if (existsSync(dir)) progress(`kept ${dir} (stopped; start it as ${owner.name} with pg_ctl -D ${dir} start)${existsSync(tablespacesDir) ? ` and its tablespaces in ${tablespacesDir}` : ''}`);
    } else {
      await rm(dir, { recursive: true, force: true });
      await rm(tablespacesDir, { recursive: true, force: true });
    }
  }

  const failed = interruption ?? checks.find((check) => !check.ok);
  const record: DrillRecord = {
    format: 1, id, cluster, backupId,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    target: targetText,
    restoreSeconds: restoreSeconds === null ? null : Math.round(restoreSeconds * 1000) / 1000,
    recoveredTo: recovered?.iso ?? null,
    dataLossWindowSeconds: recovered === null ? null : Number((BigInt(startedAt.getTime()) * 1000n - recovered.micros) / 1000n) / 1000,
    checks,
    ok: failed === undefined,
    reason: failed === undefined ? null : `${failed.name}: ${failed.detail}`,
  };
  await options.repository.put(`${DRILLS_PREFIX}${id}.json`, Buffer.from(`${JSON.stringify(record, null, 2)}\n`));
  progress(`${record.ok ? 'passed' : 'FAILED'}; recorded as ${DRILLS_PREFIX}${id}.json`);
  return record;
}

function isDrillRecord(value: unknown): value is DrillRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return record['format'] === 1 && typeof record['id'] === 'string' && typeof record['startedAt'] === 'string' && typeof record['ok'] === 'boolean' && Array.isArray(record['checks']);
}

/** Every drill record of the repository, oldest first (newest last); `problems` gets the unreadable ones. */
export async function readDrills(repository: Repository, problems?: string[]): Promise<DrillRecord[]> {
  const records: DrillRecord[] = [];
  for await (const object of repository.list(DRILLS_PREFIX)) {
    if (!object.key.endsWith('.json')) continue;
    try {
      const value = JSON.parse((await buffer(await repository.get(object.key, object.sha256))).toString('utf8')) as unknown;
      if (!isDrillRecord(value)) throw new Error('not a drill record');
      records.push(value);
    } catch (error) {
      problems?.push(`${object.key}: ${messageOf(error)}`);
    }
  }
  return records.sort((a, b) => (a.startedAt === b.startedAt ? a.id.localeCompare(b.id) : a.startedAt < b.startedAt ? -1 : 1));
}
