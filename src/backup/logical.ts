/**
 * Logical backups (issue 5 item 4; docs/logical-backups.md): `pg_dump -Fc` of single databases,
 * streamed (never a temporary file of the dump) through encryption when a keyring is given into
 *
 *   logical/<database>/<id>/dump.pgdump[.enc]   the custom-format archive as pg_dump wrote it
 *   logical/<database>/<id>/manifest.json       written last: a dump counts only with its manifest
 *
 * <database> is the name with every character outside the repository's key alphabet written as
 * ~XX (its UTF-8 bytes in hex); the manifest keeps the real name. pg_dump's output reaches the
 * repository only through a gate that ends the stream once pg_dump has exited 0, so a failed dump
 * can never complete its object; whatever was stored is deleted and no manifest is written.
 *
 * A restore never commits anything unverified: pg_restore turns the archive into SQL that psql
 * runs inside a BEGIN, and psql gets the COMMIT only once the whole stored object has been read,
 * its SHA-256 and size match the manifest and, when encrypted, every chunk has authenticated. Any
 * failure (pgwarden's own death included: psql then reads EOF without COMMIT) rolls it all back.
 * One table is restored with its data, defaults, constraints, indexes, triggers, policies, owned
 * sequences, comments and grants, chosen from the archive's table of contents (pg_restore -l) and
 * its schema script (pg_restore -s), both read from the head of the archive.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import type { ConnectionSpec } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError, messageOf } from '../errors.js';
import { decryptStream, encryptStream } from './crypto.js';
import { ObjectNotFoundError, type Keyring, type Repository, type StoredObject } from './types.js';
import { Meter } from './verify.js';
import { libpqEnv } from '../db/libpq-env.js';

/** Where logical dumps live in a repository. */
export const LOGICAL_PREFIX = 'logical/';
const MANIFEST_NAME = 'manifest.json';
const DUMP_NAME = 'dump.pgdump';

/** A logical dump as the repository records it (`logical/<database>/<id>/manifest.json`). */
export interface LogicalManifest {
  readonly format: 1;
  readonly kind: 'logical';
  /** Sortable, unique to the millisecond: "20261127T183000.123Z". */
  readonly id: string;
  readonly database: string;
  /** The key of the stored archive. */
  readonly key: string;
  /** Stored bytes (after encryption) and their SHA-256, lowercase hex. */
  readonly bytes: number;
  readonly sha256: string;
  /** Bytes pg_dump wrote (before encryption). */
  readonly dumpBytes: number;
  /** server_version_num of the server dumped, and its version string. */
  readonly pgVersion: number;
  readonly serverVersion: string;
  /** `pg_dump --version` of the program that wrote the archive. */
  readonly pgDumpVersion: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** The master key id the archive is encrypted with, or null. */
  readonly keyId: string | null;
}

/** A dump that failed, or whose manifest is missing: restore and list ignore it. */
export class LogicalBackupError extends UserError {}

// ---------------------------------------------------------------------------------------------
// Layout

const keyCharacter = /[A-Za-z0-9_.:+=@,-]/;

/** A database name as one repository key segment (see the file comment). */
export function encodeDatabase(name: string): string {
  let out = '';
  for (const character of name) {
    if (keyCharacter.test(character) && !(out === '' && character === '.')) out += character;
    else for (const byte of Buffer.from(character, 'utf8')) out += `~${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The inverse of encodeDatabase. */
export function decodeDatabase(segment: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '~') {
      bytes.push(Number.parseInt(segment.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(segment[i] ?? '', 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The prefix of every dump of `database`. */
export function logicalDatabasePrefix(database: string): string {
  return `${LOGICAL_PREFIX}${encodeDatabase(database)}/`;
}

/** The prefix of one dump. */
export function logicalPrefix(database: string, id: string): string {
  return `${logicalDatabasePrefix(database)}${id}/`;
}

/** The id of a dump started at `at`. */
export function logicalId(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '');
}

/** The start time an id holds, or null when it holds none. */
export function timeOfLogicalId(id: string): string | null {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\.\d{3})?Z$/.exec(id);
  if (match === null) return null;
  const [, y, mo, d, h, mi, s, ms] = match;
  const date = new Date(`${y ?? ''}-${mo ?? ''}-${d ?? ''}T${h ?? ''}:${mi ?? ''}:${s ?? ''}${ms ?? ''}Z`);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

// ---------------------------------------------------------------------------------------------
// Programs

type Env = NodeJS.ProcessEnv;

/** A PostgreSQL program of the server's major version (pg_dump refuses a newer server than itself). */
function program(name: string, pgBin: string | undefined, serverVersion: number): string {
  const dir = pgBin ?? `/usr/lib/postgresql/${Math.floor(serverVersion / 10000)}/bin`;
  const path = join(dir, name);
  return existsSync(path) || pgBin !== undefined ? path : name;
}

/** A running program: its exit as a promise (rejecting with its stderr) and its stderr so far. */
interface Running {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  stderr(): string;
}

function run(command: string, args: readonly string[], env: Env, stdout: 'pipe' | 'ignore' = 'pipe'): Running {
  const child = spawn(command, [...args], { stdio: ['pipe', stdout, 'pipe'], env });
  const errors: Buffer[] = [];
  child.stderr?.on('data', (chunk: Buffer) => errors.push(chunk));
  const stderr = (): string => Buffer.concat(errors).toString('utf8').trim();
  // EPIPE when the child stops reading early (pg_restore -l): its exit status says whether that is fine.
  child.stdin?.on('error', () => undefined);
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => reject(error.code === 'ENOENT' ? new UserError(`${command} is not installed`, 'install the PostgreSQL client programs of the server\'s major version (postgresql-client-NN)') : error));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command.replace(/^.*\//, '')} failed (${signal ?? `exit ${code ?? '?'}`})${stderr() === '' ? '' : `: ${stderr()}`}`));
    });
  });
  exited.catch(() => undefined);
  return { child, exited, stderr };
}

/**
 * Writes into a child's stdin while the child reads it, then discards: the source keeps flowing
 * to its end (so its checksum and authentication are checked) even when the child stops early.
 */
class ChildInput extends Writable {
  private open = true;

  constructor(private readonly stdin: NodeJS.WritableStream & { destroyed?: boolean }) {
    super();
    stdin.on('error', () => { this.open = false; });
    stdin.on('close', () => { this.open = false; });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.open || this.stdin.destroyed === true) {
      callback();
      return;
    }
    if (this.stdin.write(chunk)) {
      callback();
      return;
    }
    const done = (): void => {
      this.stdin.off('drain', done);
      this.stdin.off('close', done);
      callback();
    };
    this.stdin.on('drain', done);
    this.stdin.on('close', done);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.open) this.stdin.end();
    callback();
  }
}

async function versionOf(command: string): Promise<string> {
  const child = run(command, ['--version'], process.env);
  child.child.stdin?.end();
  const out = child.child.stdout === null ? '' : (await buffer(child.child.stdout)).toString('utf8').trim();
  await child.exited;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Backup

export interface LogicalBackupOptions {
  /** The server; its `database` is where the list of databases is read. */
  readonly connection: ConnectionSpec;
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  /** Default: every database that allows connections, templates excepted. */
  readonly databases?: readonly string[];
  /** Where pg_dump is: default /usr/lib/postgresql/<server major>/bin, else the PATH. */
  readonly pgBin?: string;
  readonly progress?: (line: string) => void;
  readonly now?: () => Date;
}

/** What happened to one database: its manifest, or why it failed (nothing of it kept). */
export type LogicalBackupResult =
  | { readonly database: string; readonly ok: true; readonly manifest: LogicalManifest }
  | { readonly database: string; readonly ok: false; readonly error: string };

interface ServerFacts {
  readonly version: number;
  readonly versionString: string;
  readonly databases: readonly string[];
}

async function serverFacts(connection: ConnectionSpec): Promise<ServerFacts> {
  const session = await DbSession.open(connection, 'pgwarden-logical');
  try {
    const [row] = await session.query({ text: "select current_setting('server_version_num')::int as version, current_setting('server_version') as version_string" });
    const rows = await session.query({ text: 'select datname from pg_database where datallowconn and not datistemplate order by datname' });
    return { version: Number(row?.['version']), versionString: String(row?.['version_string']), databases: rows.map((r) => String(r['datname'])) };
  } finally {
    await session.close();
  }
}

/** Dumps one database (facts already read); rejects with nothing of the dump left in the repository. */
async function dumpOne(options: LogicalBackupOptions, facts: ServerFacts, pgDump: string, pgDumpVersion: string, database: string): Promise<LogicalManifest> {
  const { repository, keyring } = options;
  const now = options.now ?? (() => new Date());
  const started = now();
  const id = logicalId(started);
  const prefix = logicalPrefix(database, id);
  const key = `${prefix}${DUMP_NAME}${keyring === undefined ? '' : '.enc'}`;
  const manifestKey = `${prefix}${MANIFEST_NAME}`;
  const dump = run(pgDump, ['--format=custom', '--no-password'], libpqEnv(options.connection, `pgwarden-logical-${id}`, database));
  // The gate ends only after pg_dump exited 0: a failed pg_dump errors the stream, so the put never completes.
  const gate = new PassThrough({ highWaterMark: 1024 * 1024 });
  const stdout = dump.child.stdout;
  if (stdout === null) throw new Error('pg_dump has no stdout');
  stdout.pipe(gate, { end: false });
  dump.child.stdin?.end();
  dump.exited.then(() => gate.end(), (error: unknown) => gate.destroy(error instanceof Error ? error : new Error(String(error))));
  const meter = new Meter();
  const body = new PassThrough({ highWaterMark: 1024 * 1024 });
  // pipeline() carries a failure to `body`, whose reader (the put) then fails.
  const flow = keyring === undefined ? pipeline(gate, meter, body) : pipeline(gate, meter, encryptStream(keyring), body);
  flow.catch(() => undefined);
  try {
    const stored = await repository.put(key, body, { ifExists: 'fail' });
    await dump.exited;
    const manifest: LogicalManifest = {
      format: 1,
      kind: 'logical',
      id,
      database,
      key,
      bytes: stored.size,
      sha256: stored.sha256,
      dumpBytes: meter.bytes,
      pgVersion: facts.version,
      serverVersion: facts.versionString,
      pgDumpVersion,
      startedAt: started.toISOString(),
      finishedAt: now().toISOString(),
      keyId: keyring?.current.id ?? null,
    };
    await repository.put(manifestKey, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8'), { ifExists: 'fail' });
    return manifest;
  } catch (error) {
    dump.child.kill('SIGTERM');
    await dump.exited.catch(() => undefined);
    await repository.delete([manifestKey, key]).catch(() => undefined);
    // pg_dump's own reason beats the stream error it caused.
    const reason = await dump.exited.then(() => messageOf(error), (exit: unknown) => messageOf(exit));
    throw new LogicalBackupError(`the dump of database "${database}" failed, nothing of it is kept: ${reason}`, 'fix the cause above and run pgwarden logical backup again');
  }
}

/** Dumps one database into the repository; resolves with its manifest once the dump counts. */
export async function takeLogicalBackup(options: LogicalBackupOptions, database: string): Promise<LogicalManifest> {
  const facts = await serverFacts(options.connection);
  const pgDump = program('pg_dump', options.pgBin, facts.version);
  return dumpOne(options, facts, pgDump, await versionOf(pgDump), database);
}

/**
 * Dumps each database (options.databases, or every connectable non-template one), one after the
 * other; a failed database does not stop the others. Rejects only when the server cannot be read.
 */
export async function takeLogicalBackups(options: LogicalBackupOptions): Promise<LogicalBackupResult[]> {
  const facts = await serverFacts(options.connection);
  const pgDump = program('pg_dump', options.pgBin, facts.version);
  const pgDumpVersion = await versionOf(pgDump);
  const results: LogicalBackupResult[] = [];
  for (const database of options.databases ?? facts.databases) {
    options.progress?.(`logical: dumping database "${database}"`);
    try {
      const manifest = await dumpOne(options, facts, pgDump, pgDumpVersion, database);
      options.progress?.(`logical: "${database}" stored as ${manifest.key} (${manifest.bytes} bytes)`);
      results.push({ database, ok: true, manifest });
    } catch (error) {
      results.push({ database, ok: false, error: messageOf(error) });
    }
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Catalog

/** One dump directory of the repository: complete (with its manifest) or not. */
export interface LogicalEntry {
  /** The decoded database name of the directory. */
  readonly database: string;
  readonly id: string;
  /** Every key under logical/<database>/<id>/, in key order. */
  readonly keys: readonly string[];
  readonly storedBytes: number;
  /** Undefined for an incomplete dump (no manifest: in progress or abandoned). */
  readonly manifest: LogicalManifest | undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readLogicalManifest(repository: Repository, object: StoredObject): Promise<LogicalManifest> {
  const text = (await buffer(await repository.get(object.key, object.sha256))).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UserError(`${object.key} in ${repository.description} is not valid JSON`, 'the manifest is damaged: use another copy of the repository');
  }
  if (!isRecord(parsed) || parsed['format'] !== 1 || parsed['kind'] !== 'logical' || typeof parsed['key'] !== 'string' || typeof parsed['sha256'] !== 'string' || typeof parsed['database'] !== 'string') {
    throw new UserError(`${object.key} in ${repository.description} is not a pgwarden logical dump manifest (format 1)`, 'the manifest is damaged or foreign: use another copy of the repository');
  }
  return parsed as unknown as LogicalManifest;
}

/** Every dump directory under logical/ (of one database when given), oldest first per database. */
export async function readLogicalCatalog(repository: Repository, database?: string): Promise<LogicalEntry[]> {
  const groups = new Map<string, { database: string; id: string; keys: string[]; bytes: number; manifest: StoredObject | undefined }>();
  for await (const object of repository.list(database === undefined ? LOGICAL_PREFIX : logicalDatabasePrefix(database))) {
    const match = /^logical\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(object.key);
    if (match?.[1] === undefined || match[2] === undefined) continue;
    const group = `${match[1]}/${match[2]}`;
    let entry = groups.get(group);
    if (entry === undefined) groups.set(group, (entry = { database: decodeDatabase(match[1]), id: match[2], keys: [], bytes: 0, manifest: undefined }));
    entry.keys.push(object.key);
    entry.bytes += object.size;
    if (match[3] === MANIFEST_NAME) entry.manifest = object;
  }
  const entries: LogicalEntry[] = [];
  for (const entry of groups.values()) {
    entries.push({
      database: entry.database, id: entry.id, keys: entry.keys, storedBytes: entry.bytes,
      manifest: entry.manifest === undefined ? undefined : await readLogicalManifest(repository, entry.manifest),
    });
  }
  return entries.sort((a, b) => (a.database === b.database ? a.id.localeCompare(b.id) : a.database < b.database ? -1 : 1));
}

/** The complete dumps (with a manifest), of one database when given: by database, oldest first. */
export async function listLogicalBackups(repository: Repository, database?: string): Promise<LogicalManifest[]> {
  return (await readLogicalCatalog(repository, database)).flatMap((entry) => (entry.manifest === undefined ? [] : [entry.manifest]));
}

// ---------------------------------------------------------------------------------------------
// Retention

export interface LogicalRetentionPolicy {
  /** Keep dumps younger than this many days. */
  readonly days: number;
  /** Keep at least this many of the newest dumps of each database, whatever their age (at least 1). */
  readonly minCount: number;
  /** Keep at most this many of each database (the minCount newest excepted); null: no limit. */
  readonly maxCount: number | null;
  /** Incomplete dumps younger than this are left alone (a dump may be in progress). */
  readonly incompleteGraceHours: number;
}

export interface LogicalRetentionStep {
  readonly kind: 'dump' | 'incomplete';
  readonly database: string;
  readonly id: string;
  readonly reason: string;
  /** In deletion order: the manifest first, so that a crash midway leaves an incomplete dump, never a manifest without its archive. */
  readonly keys: readonly string[];
  readonly bytes: number;
}

export interface LogicalRetentionPlan {
  readonly now: string;
  readonly policy: LogicalRetentionPolicy;
  /** Dumps kept, by database, newest first, with why. */
  readonly keep: readonly { readonly database: string; readonly id: string; readonly reason: string }[];
  readonly steps: readonly LogicalRetentionStep[];
  readonly notes: readonly string[];
}

const DAY_MS = 86_400_000;

/**
 * Which dumps to delete at `now` (pure). Per database: the newest dump is never deleted; the
 * minCount newest are kept; younger than `days` are kept up to maxCount; the rest go. Incomplete
 * dumps older than the grace period go; one whose id holds no time is left for a person.
 */
export function planLogicalRetention(entries: readonly LogicalEntry[], policy: LogicalRetentionPolicy, now: Date): LogicalRetentionPlan {
  if (!(policy.days >= 0)) throw new RangeError(`retention days must be 0 or more, not ${policy.days}`);
  if (!Number.isInteger(policy.minCount) || policy.minCount < 1) throw new RangeError(`retention min_count must be a whole number of at least 1, not ${policy.minCount}`);
  if (policy.maxCount !== null && (!Number.isInteger(policy.maxCount) || policy.maxCount < policy.minCount)) {
    throw new RangeError(`retention max_count (${policy.maxCount}) must be a whole number no smaller than min_count (${policy.minCount})`);
  }
  const keep: { database: string; id: string; reason: string }[] = [];
  const steps: LogicalRetentionStep[] = [];
  const notes: string[] = [];
  const byDatabase = new Map<string, LogicalEntry[]>();
  for (const entry of entries) {
    if (entry.manifest === undefined) continue;
    const list = byDatabase.get(entry.manifest.database) ?? [];
    list.push(entry);
    byDatabase.set(entry.manifest.database, list);
  }
  for (const [database, list] of [...byDatabase].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const newestFirst = [...list].sort((a, b) => b.id.localeCompare(a.id));
    let kept = 0;
    newestFirst.forEach((entry, index) => {
      const manifest = entry.manifest;
      if (manifest === undefined) return;
      const ageMs = now.getTime() - new Date(manifest.finishedAt).getTime();
      const age = `${(ageMs / DAY_MS).toFixed(1)} days`;
      if (index === 0) {
        keep.push({ database, id: entry.id, reason: 'the newest dump of the database (never deleted)' });
        kept += 1;
      } else if (index < policy.minCount) {
        keep.push({ database, id: entry.id, reason: `among the newest ${policy.minCount} (min_count)` });
        kept += 1;
      } else if (ageMs < policy.days * DAY_MS && (policy.maxCount === null || kept < policy.maxCount)) {
        keep.push({ database, id: entry.id, reason: `younger than ${policy.days} days (${age})` });
        kept += 1;
      } else {
        const reason = ageMs >= policy.days * DAY_MS
          ? `older than ${policy.days} days (${age}) and not among the newest ${policy.minCount}`
          : `beyond max_count ${policy.maxCount ?? ''} (${kept} newer dumps kept)`;
        const manifestKey = entry.keys.find((key) => key.endsWith(`/${MANIFEST_NAME}`));
        const keys = manifestKey === undefined ? [...entry.keys] : [manifestKey, ...entry.keys.filter((key) => key !== manifestKey)];
        steps.push({ kind: 'dump', database, id: entry.id, reason, keys, bytes: entry.storedBytes });
      }
    });
  }
  for (const entry of entries) {
    if (entry.manifest !== undefined) continue;
    const startedAt = timeOfLogicalId(entry.id);
    if (startedAt === null) {
      notes.push(`logical/${encodeDatabase(entry.database)}/${entry.id}/ has no manifest and its id holds no time: left for a person to look at`);
      continue;
    }
    const ageMs = now.getTime() - new Date(startedAt).getTime();
    if (ageMs < policy.incompleteGraceHours * 3_600_000) continue;
    steps.push({
      kind: 'incomplete', database: entry.database, id: entry.id,
      reason: `incomplete (no manifest) and started ${(ageMs / DAY_MS).toFixed(1)} days ago, beyond the ${policy.incompleteGraceHours} h grace period`,
      keys: entry.keys, bytes: entry.storedBytes,
    });
  }
  return { now: now.toISOString(), policy, keep, steps, notes };
}

/** Executes a plan: every expired dump's manifest first, then the rest. */
export async function applyLogicalRetention(repository: Repository, plan: LogicalRetentionPlan, onStep?: (step: LogicalRetentionStep) => void): Promise<void> {
  for (const step of plan.steps) {
    const [first] = step.keys;
    if (step.kind === 'dump' && first !== undefined) await repository.delete([first]);
  }
  for (const step of plan.steps) {
    const rest = step.kind === 'dump' ? step.keys.slice(1) : step.keys;
    for (let i = 0; i < rest.length; i += 500) await repository.delete(rest.slice(i, i + 500));
    onStep?.(step);
  }
}

// ---------------------------------------------------------------------------------------------
// Restore

export interface LogicalRestoreOptions {
  readonly repository: Repository;
  readonly keyring: Keyring | undefined;
  /** The target server; its `database` is used for the checks and CREATE DATABASE. */
  readonly connection: ConnectionSpec;
  /** The database whose dump is restored. */
  readonly database: string;
  /** A dump id, or 'latest'. */
  readonly id: string;
  /** The database restored into. */
  readonly into: string;
  /** Restore one table (with -n schema); absent: the whole database. */
  readonly table?: { readonly schema: string; readonly name: string };
  /** Create `into` (whole database only); it must not exist. */
  readonly create: boolean;
  /** Leave object owners and grants out (restoring into a cluster without the same roles). */
  readonly noOwner?: boolean;
  readonly pgBin?: string;
  readonly progress?: (line: string) => void;
}

export interface LogicalRestoreResult {
  readonly manifest: LogicalManifest;
  readonly into: string;
  /** The archive's entries that were restored (pg_restore -l lines without their numbers). */
  readonly restored: readonly string[];
  /** Things a person should know: foreign keys from other tables not recreated, … */
  readonly notes: readonly string[];
}

/** The restore was refused before anything was written. */
export class LogicalRestoreRefusedError extends UserError {}

/** The manifest of `id` ('latest': the newest) of `database`. */
export async function findLogicalBackup(repository: Repository, database: string, id: string): Promise<LogicalManifest> {
  const dumps = await listLogicalBackups(repository, database);
  const manifest = id === 'latest' ? dumps[dumps.length - 1] : dumps.find((m) => m.id === id);
  if (manifest === undefined) {
    const known = dumps.map((m) => m.id).slice(-5).join(', ');
    throw new LogicalRestoreRefusedError(
      id === 'latest' ? `${repository.description} holds no complete dump of database "${database}"` : `${repository.description} holds no complete dump ${id} of database "${database}"`,
      known === '' ? 'run pgwarden logical list to see which databases have dumps' : `its dumps: ${known} (pgwarden logical list --database ${database})`,
    );
  }
  return manifest;
}

/** quote_ident's rule, without the keyword list: both forms are tried where it matters. */
function identifierForms(name: string): string[] {
  const quoted = `"${name.replace(/"/g, '""')}"`;
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? [name, quoted] : [quoted];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A pattern that finds `schema.table` as pg_dump prints it, as a whole name. */
function qualifiedPattern(schema: string, table: string): RegExp {
  const forms = identifierForms(schema).flatMap((s) => identifierForms(table).map((t) => escapeRegExp(`${s}.${t}`)));
  return new RegExp(`(?<![A-Za-z0-9_$."])(?:${forms.join('|')})(?![A-Za-z0-9_$"])`);
}

/** The blocks of a pg_restore script: "-- Name: X; Type: Y; Schema: S; Owner: O" and the SQL after it. */
function scriptBlocks(script: string): { name: string; type: string; schema: string; body: string }[] {
  const blocks: { name: string; type: string; schema: string; body: string }[] = [];
  const header = /^-- Name: (.*); Type: (.*); Schema: (.*); Owner: .*$/gm;
  const found = [...script.matchAll(header)];
  found.forEach((match, index) => {
    const end = found[index + 1]?.index ?? script.length;
    blocks.push({ name: match[1] ?? '', type: match[2] ?? '', schema: match[3] ?? '', body: script.slice((match.index ?? 0) + match[0].length, end) });
  });
  return blocks;
}

/** One line of `pg_restore -l`: its number and the "DESC SCHEMA TAG OWNER" text. */
interface TocLine {
  readonly line: string;
  readonly text: string;
}

function tocLines(list: string): TocLine[] {
  return list.split('\n').flatMap((line) => {
    const match = /^\d+; \d+ \d+ (.*)$/.exec(line);
    return match?.[1] === undefined ? [] : [{ line, text: match[1] }];
  });
}

/**
 * The entries of the archive that rebuild one table (pure): the table and its data; its
 * defaults, constraints, foreign keys, triggers, policies and row security (their tags start with
 * the table's name); its indexes, extended statistics and the sequences it owns or uses as
 * identity (their SQL names the table); comments and grants on it. Also the foreign keys of other
 * tables that point at it, which are not restored (they may still exist) but reported.
 */
export function tableEntries(list: string, script: string, schema: string, table: string): { lines: string[]; foreignKeys: string[] } {
  const toc = tocLines(list);
  const starts = (text: string, desc: string, tag: string): boolean => text.startsWith(`${desc} ${schema} ${tag} `);
  const own = new Set<string>();
  const blocks = scriptBlocks(script);
  const names = qualifiedPattern(schema, table);
  const byDefinition: [string, string][] = [];
  const sequences = new Set<string>();
  const foreignKeys: string[] = [];
  for (const block of blocks) {
    if (block.schema !== schema || !names.test(block.body)) continue;
    if (['INDEX', 'STATISTICS', 'SEQUENCE', 'SEQUENCE OWNED BY'].includes(block.type)) byDefinition.push([block.type, block.name]);
    if (block.type === 'SEQUENCE OWNED BY' || block.type === 'SEQUENCE') sequences.add(block.name);
    if (block.type === 'FK CONSTRAINT' && !block.name.startsWith(`${table} `)) foreignKeys.push(`${block.schema}.${block.name.replace(' ', ': ')}`);
  }
  for (const entry of toc) {
    const { text } = entry;
    const pick = starts(text, 'TABLE', table) || starts(text, 'TABLE DATA', table)
      || ['DEFAULT', 'CONSTRAINT', 'FK CONSTRAINT', 'TRIGGER', 'POLICY'].some((desc) => text.startsWith(`${desc} ${schema} ${table} `))
      || starts(text, 'ROW SECURITY', table)
      || ['COMMENT', 'ACL'].some((desc) => starts(text, desc, `TABLE ${table}`) || text.startsWith(`${desc} ${schema} COLUMN ${table}.`))
      || byDefinition.some(([type, name]) => starts(text, type, name))
      || [...sequences].some((sequence) => starts(text, 'SEQUENCE', sequence) || starts(text, 'SEQUENCE OWNED BY', sequence) || starts(text, 'SEQUENCE SET', sequence));
    if (pick) own.add(entry.line);
  }
  return { lines: toc.filter((entry) => own.has(entry.line)).map((entry) => entry.line), foreignKeys };
}

/** The stored archive, checked against the manifest (size and SHA-256) as it streams, and decrypted. */
interface Archive {
  /** The plain archive bytes. */
  readonly stream: Readable;
  /** Settles when the stored object was read to its end and checked. */
  readonly done: Promise<void>;
  /** Why reading or checking failed, once it has. */
  failure(): unknown;
}

async function openArchive(repository: Repository, keyring: Keyring | undefined, manifest: LogicalManifest): Promise<Archive> {
  if (manifest.keyId !== null) {
    if (keyring === undefined) throw new LogicalRestoreRefusedError(`the dump ${manifest.id} of "${manifest.database}" is encrypted with key ${manifest.keyId} and no key was given`, `pass the key with --key ${manifest.keyId}=FILE (or --key-env), or --config with backups.keys`);
    if (!keyring.all.some((key) => key.id === manifest.keyId)) {
      throw new LogicalRestoreRefusedError(`the dump ${manifest.id} of "${manifest.database}" is encrypted with key ${manifest.keyId}, which is not among the keys given (${keyring.all.map((k) => k.id).join(', ')})`, `pass the key file that held key ${manifest.keyId} when the dump was taken`);
    }
  }
  let stored: Readable;
  try {
    stored = await repository.get(manifest.key, manifest.sha256);
  } catch (error) {
    if (error instanceof ObjectNotFoundError) throw new LogicalRestoreRefusedError(`${manifest.key} is missing from ${repository.description} although its manifest is there`, 'the repository is damaged: restore from another dump or another copy of the repository');
    throw error;
  }
  const meter = new Meter();
  // Small buffers bound how far the table-of-contents pass reads ahead of pg_restore (about 0.5 MiB).
  const out = new PassThrough({ highWaterMark: 256 * 1024 });
  const done = (async () => {
    if (manifest.keyId !== null && keyring !== undefined) await pipeline(stored, meter, decryptStream(keyring), out);
    else await pipeline(stored, meter, out);
    if (meter.bytes !== manifest.bytes) throw new Error(`${manifest.key}: ${meter.bytes} bytes read, the manifest records ${manifest.bytes}`);
    const digest = meter.digest();
    if (digest !== manifest.sha256) throw new Error(`${manifest.key}: SHA-256 ${digest} differs from the manifest's ${manifest.sha256}`);
  })();
  let failure: unknown;
  done.catch((error: unknown) => { failure = error; });
  return { stream: out, done, failure: () => failure };
}

/**
 * Streams the archive into the stdin of each child until it stops reading, then to the end for
 * the checks. Resolves when the source is fully read and verified and every child exited 0, or
 * (with `early`) as soon as every child exited 0 (the source is then abandoned unchecked).
 */
async function feed(archive: Archive, children: readonly Running[], early: boolean): Promise<void> {
  const inputs = children.map((child) => {
    if (child.child.stdin === null) throw new Error('a child without stdin');
    return new ChildInput(child.child.stdin);
  });
  archive.stream.on('data', (chunk: Buffer) => {
    let blocked = 0;
    for (const input of inputs) {
      if (!input.write(chunk)) {
        blocked += 1;
        input.once('drain', () => {
          blocked -= 1;
          if (blocked === 0) archive.stream.resume();
        });
      }
    }
    if (blocked > 0) archive.stream.pause();
  });
  archive.stream.on('end', () => { for (const input of inputs) input.end(); });
  const exits = Promise.all(children.map((child) => child.exited));
  if (early) {
    try {
      await Promise.race([exits, archive.done.then(() => exits)]);
    } finally {
      archive.stream.destroy();
    }
    return;
  }
  await Promise.all([archive.done, exits]);
}

function kill(...children: readonly (Running | undefined)[]): void {
  for (const child of children) if (child !== undefined && child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL');
}

/** Reads the archive's table of contents and schema script (both at its head). */
async function readToc(options: LogicalRestoreOptions, manifest: LogicalManifest, pgRestore: string, withScript: boolean): Promise<{ list: string; script: string }> {
  const archive = await openArchive(options.repository, options.keyring, manifest);
  const lister = run(pgRestore, ['--list'], process.env);
  const scripter = withScript ? run(pgRestore, ['--schema-only', '--file=-'], process.env) : undefined;
  const listOut = lister.child.stdout === null ? Promise.resolve(Buffer.alloc(0)) : buffer(lister.child.stdout);
  const scriptOut = scripter?.child.stdout == null ? Promise.resolve(Buffer.alloc(0)) : buffer(scripter.child.stdout);
  try {
    await feed(archive, scripter === undefined ? [lister] : [lister, scripter], true);
  } catch (error) {
    kill(lister, scripter);
    // A decryption error (wrong key, damage) says more than pg_restore's "unexpected end of file".
    const cause = archive.failure() ?? error;
    throw new LogicalRestoreRefusedError(`cannot read the dump ${manifest.id} of "${manifest.database}": ${messageOf(cause)}`, 'nothing was written; check the key (--key ID=FILE) or restore from another dump');
  }
  return { list: (await listOut).toString('utf8'), script: (await scriptOut).toString('utf8') };
}

/** The target database's user objects (relations, routines, types, schemas, extensions), counted. */
async function objectsIn(connection: ConnectionSpec, database: string): Promise<number> {
  const session = await DbSession.open({ ...connection, database }, 'pgwarden-logical-restore');
  try {
    const [row] = await session.query({
      text: `select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                       where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%')
                  + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname not in ('pg_catalog', 'information_schema'))
                  + (select count(*) from pg_namespace where nspname not in ('public', 'pg_catalog', 'information_schema', 'pg_toast') and nspname not like 'pg\\_temp%' and nspname not like 'pg\\_toast\\_temp%')
                  + (select count(*) from pg_extension where extname <> 'plpgsql') as n`,
    });
    return Number(row?.['n']);
  } finally {
    await session.close();
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A conninfo naming only the database (the rest comes from the environment). */
function dbnameConninfo(database: string): string {
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * Restores a dump: the whole database into an empty (or, with create, new) database, or one table
 * into a database that does not have it. Refuses, before writing anything, a non-empty target, an
 * existing table, a missing or wrong key and an archive without the table. Commits only once the
 * whole archive verified (see the file comment).
 */
export async function restoreLogical(options: LogicalRestoreOptions): Promise<LogicalRestoreResult> {
  const { connection, into, table } = options;
  const progress = options.progress ?? (() => undefined);
  if (options.create && table !== undefined) throw new LogicalRestoreRefusedError('--create goes with a whole-database restore, not with --table', 'create the database first, or leave out --table');
  const manifest = await findLogicalBackup(options.repository, options.database, options.id);
  progress(`logical restore: dump ${manifest.id} of "${manifest.database}" (${manifest.bytes} bytes${manifest.keyId === null ? '' : `, key ${manifest.keyId}`})`);

  const admin = await DbSession.open(connection, 'pgwarden-logical-restore');
  let serverVersion: number;
  let exists: boolean;
  try {
    const [row] = await admin.query({ text: "select current_setting('server_version_num')::int as version, exists (select 1 from pg_database where datname = $1) as present", values: [into] });
    serverVersion = Number(row?.['version']);
    exists = row?.['present'] === true;
  } finally {
    await admin.close();
  }
  if (options.create && exists) throw new LogicalRestoreRefusedError(`database "${into}" already exists`, `choose a new name for --into, or leave out --create to restore into "${into}" if it is empty`);
  if (!options.create && !exists) throw new LogicalRestoreRefusedError(`database "${into}" does not exist`, table === undefined ? 'add --create to create it' : `create it first (createdb ${into}) or restore the table into an existing database`);
  if (table === undefined && exists) {
    const count = await objectsIn(connection, into);
    if (count > 0) throw new LogicalRestoreRefusedError(`database "${into}" is not empty (${count} user objects): a whole-database restore goes only into an empty database`, `restore into a new one with --into NEW --create, or one table with --table SCHEMA.TABLE`);
  }
  if (table !== undefined) {
    const session = await DbSession.open({ ...connection, database: into }, 'pgwarden-logical-restore');
    try {
      const [row] = await session.query({ text: 'select exists (select 1 from pg_namespace where nspname = $1) as schema, (select relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2) as kind', values: [table.schema, table.name] });
      const qualified = `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
      if (row?.['schema'] !== true) throw new LogicalRestoreRefusedError(`schema "${table.schema}" does not exist in database "${into}"`, `create it first: CREATE SCHEMA ${quoteIdent(table.schema)}`);
      if (row['kind'] !== null && row['kind'] !== undefined) {
        throw new LogicalRestoreRefusedError(
          `${qualified} already exists in database "${into}": pgwarden restores a table only where it is absent`,
          `keep the current one aside with ALTER TABLE ${qualified} RENAME TO ${quoteIdent(`${table.name}_before_restore`)} (its constraints and indexes keep their names: rename them too or drop them), or drop it with DROP TABLE ${qualified}; or restore into another database with --into`,
        );
      }
    } finally {
      await session.close();
    }
  }

  const pgRestore = program('pg_restore', options.pgBin, serverVersion);
  const psql = program('psql', options.pgBin, serverVersion);
  // The head of the archive: proves the key and the format before anything is created.
  const { list, script } = await readToc(options, manifest, pgRestore, table !== undefined);
  const notes: string[] = [];
  let restored = tocLines(list).map((entry) => entry.text);
  let listFile: string | undefined;
  const scratch = await mkdtemp(join(tmpdir(), 'pgwarden-logical-'));
  try {
    const restoreArgs = ['--file=-', '--exit-on-error'];
    if (options.noOwner === true) restoreArgs.push('--no-owner', '--no-privileges');
    if (table !== undefined) {
      const chosen = tableEntries(list, script, table.schema, table.name);
      if (!tocLines(chosen.lines.join('\n')).some((entry) => entry.text.startsWith(`TABLE ${table.schema} ${table.name} `))) {
        throw new LogicalRestoreRefusedError(`the dump ${manifest.id} of "${manifest.database}" has no table ${quoteIdent(table.schema)}.${quoteIdent(table.name)}`, 'check the name (schema.table, case as created) with pg_restore -l, or pick another dump with --id');
      }
      listFile = join(scratch, 'restore.list');
      await writeFile(listFile, `${chosen.lines.join('\n')}\n`, { mode: 0o600 });
      restoreArgs.push(`--use-list=${listFile}`);
      restored = tocLines(chosen.lines.join('\n')).map((entry) => entry.text);
      for (const fk of chosen.foreignKeys) notes.push(`the foreign key ${fk} of another table points at this table and was not recreated: add it back with ALTER TABLE … ADD CONSTRAINT once the rows agree`);
    }

    if (options.create) {
      const session = await DbSession.open(connection, 'pgwarden-logical-restore');
      try {
        await session.script(`CREATE DATABASE ${quoteIdent(into)} TEMPLATE template0`);
      } finally {
        await session.close();
      }
      progress(`logical restore: created database "${into}"`);
    }

    const archive = await openArchive(options.repository, options.keyring, manifest);
    const env = libpqEnv(connection, 'pgwarden-logical-restore', into);
    // Our own BEGIN and, only after verification, COMMIT (not --single-transaction, which commits
    // at end of input): if pgwarden dies midway, psql reads EOF without COMMIT and the server rolls back.
    const apply = run(psql, ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', `--dbname=${dbnameConninfo(into)}`, '--file=-'], env, 'ignore');
    const convert = run(pgRestore, restoreArgs, process.env);
    try {
      if (convert.child.stdout === null || apply.child.stdin === null) throw new Error('pg_restore or psql without a pipe');
      apply.child.stdin.write('BEGIN;\n');
      convert.child.stdout.pipe(apply.child.stdin, { end: false });
      // psql exiting before its input ends is a failure (ON_ERROR_STOP): stop everything.
      const applyFailed = apply.exited.then(() => { throw new Error('psql ended before its input did'); });
      applyFailed.catch(() => undefined);
      await Promise.race([feed(archive, [convert], false), applyFailed]);
      // Everything verified and converted: only now does psql get its COMMIT.
      apply.child.stdin.end('COMMIT;\n');
      await apply.exited;
    } catch (error) {
      // The stored object's own failure (checksum, key, damage) is the cause of anything after it.
      const cause = archive.failure() ?? error;
      kill(apply, convert);
      archive.stream.destroy();
      await apply.exited.catch(() => undefined);
      throw new UserError(`the restore of dump ${manifest.id} into "${into}" failed and was rolled back: ${messageOf(cause)}`, 'nothing of it was committed; fix the cause above and run the restore again');
    }
  } catch (error) {
    if (options.create) await dropCreated(connection, into);
    throw error;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  progress(`logical restore: ${restored.length} entries restored into "${into}"`);
  return { manifest, into, restored, notes };
}

/** Drops the database a failed `--create` restore made (it held nothing else). */
async function dropCreated(connection: ConnectionSpec, database: string): Promise<void> {
  const session = await DbSession.open(connection, 'pgwarden-logical-restore').catch(() => undefined);
  if (session === undefined) return;
  try {
    await session.script(`DROP DATABASE IF EXISTS ${quoteIdent(database)}`);
  } catch {
    // Left for the user: the error they see names the database.
  } finally {
    await session.close();
  }
}
