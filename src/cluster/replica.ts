/**
 * Read replicas on this host (issue 6 item 2; docs/replicas.md): `pgwarden replica create` and
 * `pgwarden replica list`.
 *
 * create, in three phases, so that nothing is changed before every check has passed:
 * 1. Checks, collected (not one at a time, so the DBA fixes them in one round): the cluster's
 *    primary reachable, version 12+, wal_level replica or logical, a free WAL sender for
 *    pg_basebackup's two connections, a free slot and an unused slot name, a role allowed to
 *    replicate, the PostgreSQL programs of the primary's major here, the data directory absent or
 *    empty, the port free, and two replication connections: one with pgwarden's credentials (what
 *    pg_basebackup will use: pg_hba.conf and the REPLICATION attribute) and one exactly as the
 *    standby will connect, as the directory's owner with the primary_conninfo about to be written
 *    and no password (it must come from a passfile).
 * 2. The plan: every SQL statement and command line, in order.
 * 3. Execution: slot (reserving WAL at once), pg_basebackup -X stream -S SLOT -R as the owner (the
 *    password through PGPASSWORD, never on the line), the standby's settings in
 *    postgresql.auto.conf (primary_conninfo rewritten without any password), pg_ctl start, then a
 *    wait until pg_stat_replication on the primary shows the new node streaming.
 *    A failure (or an interrupt) undoes what this run made: the server stopped, the slot dropped,
 *    the directory removed (emptied when it existed before), and the error says what is left.
 *
 * list: the standbys as the primary sees them (pg_stat_replication joined to the slots they use),
 * slots no standby uses, and each configured node that is a standby with its connection string
 * and whether it is fit for reporting queries: streaming, and behind by less than the
 * replication-lag check's warning thresholds (with the config's overrides for the cluster).
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { describeConnection } from '../config/conninfo.js';
import { redact } from '../config/redact.js';
import type { ClusterConfig, ConnectionSpec, NodeConfig } from '../config/types.js';
import { libpqEnv } from '../db/libpq-env.js';
import { DbSession } from '../db/session.js';
import { UserError, messageOf } from '../errors.js';
import { boolean, number, string, stringOrNull } from '../probes/values.js';
import { resolveOwner, type Owner } from '../backup/restore.js';
import { freePort, processAlive } from './local.js';
import { asOwner, passwordOf, plainEnv, programPath, publicUri, quoteConf, quoteConninfo, quoteShell, quoteSql, run, throwIfAborted, type RunResult } from './processes.js';

/** The application_name of pgwarden's own connections while it builds a replica. */
/** The application_name of pgwarden's sessions for replica commands. */
export const APPLICATION = 'pgwarden-replica';
/** The server log of a replica started by pgwarden, in its data directory. */
export const REPLICA_LOG = 'pgwarden-replica.log';
const DEFAULT_STREAM_TIMEOUT_MS = 60_000;
const START_TIMEOUT_S = 60;
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;
/** The settings pgwarden writes into the replica's postgresql.auto.conf (earlier lines for them are replaced). */
const OWN_SETTINGS = ['primary_conninfo', 'primary_slot_name', 'port', 'hot_standby', 'hot_standby_feedback', 'cluster_name'];

type Env = Readonly<Record<string, string | undefined>>;

function lastLines(text: string, count: number): string {
  return text.trimEnd().split('\n').slice(-count).join('\n  ');
}

async function portTaken(port: number): Promise<boolean> {
  // 0.0.0.0 also collides with a listener on one address; 127.0.0.1 is where local replicas listen.
  for (const host of ['0.0.0.0', '127.0.0.1']) {
    const taken = await new Promise<boolean>((done) => {
      const server = createServer();
      server.once('error', () => done(true));
      server.listen({ port, host, exclusive: true }, () => server.close(() => done(false)));
    });
    if (taken) return true;
  }
  return false;
}

function isRoot(): boolean {
  return (process.getuid?.() ?? -1) === 0;
}


// ---------------------------------------------------------------------------------------------
// The primary

/** A configured node's open session on the cluster's primary. */
export interface PrimaryConnection {
  readonly node: NodeConfig;
  readonly session: DbSession;
}

/** Opens a session on the first configured node of `cluster` that is not in recovery. */
export async function connectPrimary(cluster: ClusterConfig): Promise<PrimaryConnection> {
  const failures: string[] = [];
  for (const node of cluster.nodes) {
    let session: DbSession;
    try {
      session = await DbSession.open(node.connection, APPLICATION);
    } catch (error) {
      failures.push(`${node.name}: ${messageOf(error)}`);
      continue;
    }
    const [row] = await session.query({ text: 'select pg_is_in_recovery() as standby' }).catch(() => []);
    if (row?.['standby'] === false) return { node, session };
    failures.push(`${node.name}: ${row === undefined ? 'could not ask pg_is_in_recovery()' : 'a standby'}`);
    await session.close();
  }
  throw new PrimaryUnreachableError(
    `cluster ${cluster.name}: no primary reachable (${failures.join('; ')})`,
    'start the primary, or fix its dsn under clusters[].nodes in the config file',
  );
}

/** No configured node of the cluster is a reachable primary. */
export class PrimaryUnreachableError extends UserError {}

// ---------------------------------------------------------------------------------------------
// replica create: checks and plan

export interface CreateReplicaOptions {
  readonly cluster: ClusterConfig;
  /** The new data directory (absolute): absent (its parent must exist) or empty. */
  readonly dataDir: string;
  /** Undefined: a free port is chosen. */
  readonly port?: number | undefined;
  /** Default replica_<name>. */
  readonly slot?: string | undefined;
  /** The node's name (application_name, cluster_name, the config snippet); default: the directory's name. */
  readonly name?: string | undefined;
  /** A password file the standby reads (written into primary_conninfo as passfile); default: its owner's ~/.pgpass. */
  readonly passfile?: string | undefined;
  /** Where the PostgreSQL programs are (default /usr/lib/postgresql/<primary's major>/bin). */
  readonly pgBin?: string | undefined;
  readonly streamTimeoutMs?: number;
  readonly progress?: (line: string) => void;
  /** Stops the run (Ctrl-C): what was made so far is undone. */
  readonly signal?: AbortSignal;
}

/** A check that failed, with what to do. */
export interface Problem {
  readonly problem: string;
  readonly fix: string;
}

/** One step of the plan: what it does and the exact SQL or command. */
export interface PlanStep {
  readonly title: string;
  readonly command: string;
}

export interface ReplicaPlan {
  readonly cluster: string;
  readonly primaryNode: string;
  /** The primary as pgwarden reaches it (no password). */
  readonly primary: string;
  readonly major: number;
  readonly name: string;
  readonly slot: string;
  readonly dataDir: string;
  readonly port: number;
  /** The port was chosen by pgwarden (another is tried if it is taken at start). */
  readonly portChosen: boolean;
  readonly owner: string;
  /** What the standby connects with: no password, ever. */
  readonly primaryConninfo: string;
  /** The replica's settings in postgresql.auto.conf, in order. */
  readonly settings: readonly (readonly [string, string])[];
  readonly steps: readonly PlanStep[];
}

/** Refused before anything was changed; every failed check is listed. */
export class ReplicaRefusedError extends UserError {
  constructor(readonly problems: readonly Problem[]) {
    super(
      `replica create refused, nothing was changed:\n${problems.map((p) => `  - ${p.problem}\n    fix: ${p.fix}`).join('\n')}`,
      problems.length === 1 ? problems[0]?.fix : 'fix each problem above, then run the same command again',
    );
  }
}

/** Failed midway: what was undone and what is left are in the message. */
export class ReplicaFailedError extends UserError {}

/** The default node name: the data directory's name, as a slot name can hold it. */
export function defaultNodeName(dataDir: string): string {
  const base = basename(dataDir).toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^_+|_+$/g, '');
  return base === '' || base === 'data' ? `replica_${basename(dirname(dataDir)).toLowerCase().replace(/[^a-z0-9_]+/g, '_')}` : base;
}

/** The default slot of a node: replica_<name> in the characters a slot name allows. */
export function defaultSlotName(name: string): string {
  return `replica_${name.toLowerCase().replace(/[^a-z0-9_]+/g, '_')}`.slice(0, 63);
}

/** The primary_conninfo of the standby: where and who, the slot's application_name, never a password. */
export function standbyConninfo(spec: ConnectionSpec, name: string, passfile: string | undefined): string {
  const pairs: [string, string][] = [['host', spec.host], ['port', String(spec.port)], ['user', spec.user], ['application_name', name], ['sslmode', spec.sslmode]];
  if (spec.sslrootcert !== undefined) pairs.push(['sslrootcert', spec.sslrootcert]);
  if (passfile !== undefined) pairs.push(['passfile', passfile]);
  return pairs.map(([key, value]) => `${key}=${quoteConninfo(value)}`).join(' ');
}

interface PrimaryFacts {
  readonly version: number;
  readonly walLevel: string;
  readonly maxWalSenders: number;
  readonly walSendersUsed: number;
  readonly maxSlots: number;
  readonly slotsUsed: number;
  readonly slotExists: boolean;
  readonly slotActive: boolean;
  readonly canReplicate: boolean;
  readonly user: string;
  /** This host's address as the primary sees it (for the pg_hba.conf line), null over a Unix socket. */
  readonly clientAddr: string | null;
}

async function primaryFacts(session: DbSession, slot: string): Promise<PrimaryFacts> {
  const [row] = await session.query({
    text: `select current_setting('server_version_num')::int as version, current_setting('wal_level') as wal_level,
      current_setting('max_wal_senders')::int as max_wal_senders, (select count(*) from pg_stat_get_wal_senders())::int as wal_senders_used,
      current_setting('max_replication_slots')::int as max_slots, (select count(*) from pg_replication_slots)::int as slots_used,
      exists(select 1 from pg_replication_slots where slot_name = $1) as slot_exists,
      exists(select 1 from pg_replication_slots where slot_name = $1 and active) as slot_active,
      (select rolsuper or rolreplication from pg_roles where rolname = current_user) as can_replicate,
      current_user as "user", host(inet_client_addr()) as client_addr`,
    values: [slot],
  });
  if (row === undefined) throw new Error('the primary returned no facts');
  return {
    version: number(row, 'version'), walLevel: string(row, 'wal_level'),
    maxWalSenders: number(row, 'max_wal_senders'), walSendersUsed: number(row, 'wal_senders_used'),
    maxSlots: number(row, 'max_slots'), slotsUsed: number(row, 'slots_used'),
    slotExists: boolean(row, 'slot_exists'), slotActive: boolean(row, 'slot_active'),
    canReplicate: boolean(row, 'can_replicate'), user: string(row, 'user'), clientAddr: stringOrNull(row, 'client_addr'),
  };
}

type DirState = { readonly kind: 'absent' } | { readonly kind: 'empty' } | { readonly kind: 'unusable'; readonly problem: Problem };

async function dirState(dir: string): Promise<DirState> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      if (existsSync(dirname(dir))) return { kind: 'absent' };
      return { kind: 'unusable', problem: { problem: `the parent of ${dir} does not exist`, fix: `create ${dirname(dir)} first, or choose another --data-dir` } };
    }
    if (code === 'ENOTDIR') return { kind: 'unusable', problem: { problem: `${dir} is a file, not a directory`, fix: 'choose another --data-dir' } };
    throw error;
  }
  if (entries.length > 0) {
    return {
      kind: 'unusable',
      problem: { problem: `${dir} is not empty (${entries.length} entries, e.g. ${entries.slice(0, 3).join(', ')})`, fix: 'choose a new or empty --data-dir: pgwarden never writes into a directory that holds files' },
    };
  }
  return { kind: 'empty' };
}

/** Why a replication connection failed, and the fix, from libpq's message. */
function replicationProblem(stderr: string, facts: PrimaryFacts, spec: ConnectionSpec, asStandby: { owner: string; passfile: string | undefined } | undefined): Problem {
  const text = stderr.trim().replace(/^psql: (error: )?/gm, '');
  const who = asStandby === undefined ? `pgwarden (as ${spec.user})` : `the standby (as ${asStandby.owner}, user ${spec.user}, no password in primary_conninfo)`;
  const client = facts.clientAddr === null ? 'samehost' : facts.clientAddr.includes(':') ? `${facts.clientAddr}/128` : `${facts.clientAddr}/32`;
  if (/no pg_hba\.conf entry for replication connection/i.test(text)) {
    const line = spec.host.startsWith('/') ? `local replication ${spec.user} peer` : `host replication ${spec.user} ${client} scram-sha-256`;
    return {
      problem: `the primary's pg_hba.conf refuses replication connections from ${who}: ${text}`,
      fix: `add "${line}" to the primary's pg_hba.conf (above any reject line), then run select pg_reload_conf() there`,
    };
  }
  if (/must be superuser or replication role|permission denied to start WAL sender/i.test(text)) {
    return { problem: `${spec.user} may not replicate: ${text}`, fix: `on the primary: ALTER ROLE ${spec.user} REPLICATION` };
  }
  if (asStandby !== undefined && /password|authentication failed/i.test(text)) {
    const where = asStandby.passfile ?? `~${asStandby.owner}/.pgpass`;
    return {
      problem: `the standby could not authenticate: it connects as ${asStandby.owner} with primary_conninfo and no password in it (${text})`,
      fix: `put the password into ${where} as "${spec.host}:${spec.port}:*:${spec.user}:PASSWORD" (owned by ${asStandby.owner}, mode 0600)${asStandby.passfile === undefined ? ', or pass --passfile FILE' : ''}`,
    };
  }
  if (/password|authentication failed/i.test(text)) {
    return { problem: `the replication connection was refused: ${text}`, fix: 'check the password of the node\'s dsn (or ~/.pgpass) and the primary\'s pg_hba.conf method for replication' };
  }
  return { problem: `a replication connection by ${who} failed: ${text}`, fix: 'check that the primary accepts replication connections from this host (pg_hba.conf, listen_addresses, a firewall)' };
}

/** IDENTIFY_SYSTEM over a physical replication connection: what pg_basebackup and the walreceiver need. */
function tryReplication(psql: string, owner: Owner | undefined, conninfo: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return run(owner, psql, ['-X', '-A', '-t', '-w', '-d', `${conninfo} replication=true`, '-c', 'IDENTIFY_SYSTEM'], env);
}

/**
 * Runs every check and returns the plan; throws ReplicaRefusedError listing each failed check.
 * Reads only: nothing is created.
 */
export async function planReplica(options: CreateReplicaOptions, primary: PrimaryConnection, env: Env = process.env): Promise<ReplicaPlan> {
  const problems: Problem[] = [];
  const spec = primary.node.connection;
  const dataDir = options.dataDir;
  const name = options.name ?? defaultNodeName(dataDir);
  const slot = options.slot ?? defaultSlotName(name);
  if (!SLOT_NAME.test(slot)) problems.push({ problem: `"${slot}" is not a valid slot name`, fix: 'a slot name has 1 to 63 lower-case letters, digits and underscores: pass --slot' });
  if (!/^[\x20-\x7e]{1,63}$/.test(name)) problems.push({ problem: `"${name}" cannot be a node's application_name`, fix: 'pass --name with at most 63 printable ASCII characters' });
  const facts = await primaryFacts(primary.session, slot);
  const major = Math.floor(facts.version / 10000);
  const pgBin = options.pgBin ?? (env['PGWARDEN_PG_BIN'] === '' ? undefined : env['PGWARDEN_PG_BIN']);

  if (facts.version < 120000) problems.push({ problem: `the primary runs PostgreSQL ${major}: replica create needs 12 or later (standby.signal)`, fix: 'create the standby by hand as that version\'s documentation describes, or upgrade' });
  if (facts.walLevel !== 'replica' && facts.walLevel !== 'logical') {
    problems.push({ problem: `wal_level is ${facts.walLevel} on the primary: standbys need replica or logical`, fix: 'on the primary: ALTER SYSTEM SET wal_level = replica; then restart it' });
  }
  const freeSenders = facts.maxWalSenders - facts.walSendersUsed;
  if (freeSenders < 2) {
    problems.push({
      problem: `max_wal_senders is ${facts.maxWalSenders} with ${facts.walSendersUsed} in use: pg_basebackup -X stream needs 2 while it copies, the standby 1 afterwards`,
      fix: `on the primary: ALTER SYSTEM SET max_wal_senders = ${facts.walSendersUsed + 3}; then restart it`,
    });
  }
  if (facts.slotExists) {
    problems.push({
      problem: `replication slot ${slot} exists on the primary already (${facts.slotActive ? 'active: a standby uses it' : 'inactive: a leftover keeps WAL for nobody'})`,
      fix: facts.slotActive ? 'choose another --slot or --name' : `choose another --slot, or drop the leftover on the primary: select pg_drop_replication_slot(${quoteSql(slot)})`,
    });
  } else if (facts.slotsUsed >= facts.maxSlots) {
    problems.push({ problem: `max_replication_slots is ${facts.maxSlots} and all are in use`, fix: `drop an unused slot, or on the primary: ALTER SYSTEM SET max_replication_slots = ${facts.maxSlots + 2}; then restart it` });
  }
  if (!facts.canReplicate) problems.push({ problem: `role ${facts.user} has neither REPLICATION nor superuser`, fix: `on the primary: ALTER ROLE ${facts.user} REPLICATION (or use a node dsn whose user has it)` });

  const basebackup = programPath(pgBin, major, 'pg_basebackup');
  const pgCtl = programPath(pgBin, major, 'pg_ctl');
  const psql = programPath(pgBin, major, 'psql');
  const binDir = pgBin ?? `/usr/lib/postgresql/${major}/bin`;
  if (basebackup === undefined || pgCtl === undefined || psql === undefined || !existsSync(join(binDir, 'postgres'))) {
    problems.push({ problem: `the PostgreSQL ${major} server programs (pg_basebackup, pg_ctl, postgres, psql) are not in ${binDir}`, fix: `install the PostgreSQL ${major} server package, or set PGWARDEN_PG_BIN to the directory that holds them` });
  }

  const dir = await dirState(dataDir);
  if (dir.kind === 'unusable') problems.push(dir.problem);
  let owner: Owner | undefined;
  try {
    owner = await resolveOwner(undefined, dir.kind === 'empty' ? dataDir : dirname(dataDir));
  } catch (error) {
    problems.push({ problem: messageOf(error), fix: error instanceof UserError && error.hint !== undefined ? error.hint.replace('pgwarden restore', 'pgwarden replica create') : 'run pgwarden as root or as the directory\'s owner' });
  }

  const portChosen = options.port === undefined;
  const port = options.port ?? (await freePort());
  if (!portChosen && (await portTaken(port))) problems.push({ problem: `port ${port} is in use on this host`, fix: 'pass another --port, or leave it out to have a free one chosen' });

  if (options.passfile !== undefined) {
    const info = await stat(options.passfile).catch(() => undefined);
    if (info === undefined || !info.isFile()) problems.push({ problem: `--passfile ${options.passfile} is not a file`, fix: 'write it first: host:port:*:user:password, mode 0600, owned by the replica\'s owner' });
    else if ((info.mode & 0o077) !== 0) problems.push({ problem: `--passfile ${options.passfile} is readable by group or others, so libpq ignores it`, fix: `chmod 0600 ${options.passfile}` });
    else if (owner !== undefined && info.uid !== owner.uid) problems.push({ problem: `--passfile ${options.passfile} does not belong to ${owner.name}, who runs the standby`, fix: `chown ${owner.name} ${options.passfile}` });
  }

  const conninfo = standbyConninfo(spec, name, options.passfile);
  if (psql !== undefined) {
    // With pgwarden's credentials: pg_hba.conf and the REPLICATION attribute (what pg_basebackup meets).
    const password = passwordOf(spec);
    const ours = await tryReplication(psql, undefined, '', { ...libpqEnv(spec, APPLICATION), ...(password === undefined ? {} : { PGPASSWORD: password }) });
    if (ours.code !== 0) {
      problems.push(replicationProblem(redact(ours.stderr, password === undefined ? [] : [password]), facts, spec, undefined));
    } else if (owner !== undefined) {
      // As the standby will: its owner, its primary_conninfo, no password but a passfile's.
      const standby = await tryReplication(psql, owner, conninfo, plainEnv());
      if (standby.code !== 0) problems.push(replicationProblem(standby.stderr, facts, spec, { owner: owner.name, passfile: options.passfile }));
    }
  }

  if (problems.length > 0 || owner === undefined || basebackup === undefined || pgCtl === undefined) throw new ReplicaRefusedError(problems);
  const runner = owner;

  const settings: [string, string][] = [
    ['primary_conninfo', conninfo],
    ['primary_slot_name', slot],
    ['port', String(port)],
    ['hot_standby', 'on'],
    ['hot_standby_feedback', 'on'],
    ['cluster_name', name],
  ];
  const runAsText = (program: string, args: readonly string[]): string => asOwner(runner, program, args).flat().map(quoteShell).join(' ');
  const envText = `PGHOST=${quoteShell(spec.host)} PGPORT=${spec.port} PGUSER=${quoteShell(spec.user)}${passwordOf(spec) === undefined ? '' : ' PGPASSWORD=(hidden)'}`;
  const steps: PlanStep[] = [
    { title: `create the slot on the primary ${primary.node.name}`, command: `select pg_create_physical_replication_slot(${quoteSql(slot)}, true);` },
    { title: `copy the primary into ${dataDir} as ${runner.name}`, command: `${envText} ${runAsText(basebackup, ['-D', dataDir, '-X', 'stream', '-S', slot, '-R', '-c', 'fast'])}` },
    { title: `write the standby settings into ${join(dataDir, 'postgresql.auto.conf')} (primary_conninfo without a password)`, command: settings.map(([key, value]) => `${key} = ${quoteConf(value)}`).join('\n      ') },
    { title: `start it on port ${port}`, command: runAsText(pgCtl, ['start', '-D', dataDir, '-l', join(dataDir, REPLICA_LOG), '-w', '-t', String(START_TIMEOUT_S)]) },
    {
      title: `wait up to ${Math.round((options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS) / 1000)} s until the primary shows it streaming`,
      command: `select state from pg_stat_replication where application_name = ${quoteSql(name)};  -- until 'streaming'`,
    },
  ];
  return {
    cluster: options.cluster.name, primaryNode: primary.node.name, primary: describeConnection(spec), major, name, slot, dataDir, port, portChosen,
    owner: runner.name, primaryConninfo: conninfo, settings, steps,
  };
}

/** The plan as printed before it runs. */
export function renderPlan(plan: ReplicaPlan): string {
  const lines = [
    `Replica ${plan.name} of cluster ${plan.cluster}: a streaming standby of ${plan.primaryNode} (${plan.primary}) in ${plan.dataDir}, port ${plan.port}, slot ${plan.slot}, run by ${plan.owner}`,
    'Plan:',
    ...plan.steps.flatMap((step, index) => [`  ${index + 1}. ${step.title}`, `      ${step.command}`]),
  ];
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// replica create: execution

export interface ReplicaCreated {
  readonly name: string;
  readonly slot: string;
  readonly dataDir: string;
  readonly port: number;
  /** How clients reach it (the primary's user and database, no password). */
  readonly connection: string;
  /** The node entry to add under clusters[].nodes. */
  readonly configSnippet: string;
  readonly durationMs: number;
}

/** The host clients use for a replica on this machine: the primary's when that is local, else this host's name. */
function localHostFor(spec: ConnectionSpec): string {
  const local = ['127.0.0.1', 'localhost', '::1'];
  return local.includes(spec.host) || spec.host.startsWith('/') ? spec.host : hostname();
}

/** What this run has changed so far, to undo on failure. */
interface Made {
  slot: boolean;
  /** 'created': the directory is ours; 'filled': it existed (empty) and we wrote into it. */
  dir: 'none' | 'created' | 'filled';
  started: boolean;
}

async function writeStandbySettings(plan: ReplicaPlan, owner: Owner, port: number): Promise<void> {
  const path = join(plan.dataDir, 'postgresql.auto.conf');
  const text = await readFile(path, 'utf8').catch(() => '');
  // pg_basebackup -R wrote primary_conninfo with whatever authenticated it (PGPASSWORD included): replace it.
  const kept = text.split('\n').filter((line) => !OWN_SETTINGS.some((key) => new RegExp(`^\\s*${key}\\s*=`).test(line)) && line !== '');
  const settings = plan.settings.map(([key, value]) => `${key} = ${quoteConf(key === 'port' ? String(port) : value)}`);
  await writeFile(path, `${[...kept, `# pgwarden replica create: standby ${plan.name} of ${plan.primaryNode}, ${new Date().toISOString()}`, ...settings].join('\n')}\n`, { mode: 0o600 });
  if (isRoot()) await chown(path, owner.uid, owner.gid);
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);
  return pid > 0 && processAlive(pid) ? pid : undefined;
}

/** Stops the replica this run started: pg_ctl stop -m immediate, then signals. */
async function stopServer(pgCtl: string, owner: Owner, dataDir: string): Promise<void> {
  await run(owner, pgCtl, ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '30'], plainEnv()).catch(() => undefined);
  const deadline = Date.now() + 10_000;
  for (let pid = await postmasterPid(dataDir); pid !== undefined; pid = await postmasterPid(dataDir)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      await delay(200);
      return;
    }
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      return;
    }
    await delay(100);
  }
}

/** Drops the slot, waiting for the walsender of a standby just stopped to release it. */
async function dropSlot(primary: PrimaryConnection, slot: string): Promise<void> {
  let session = primary.session;
  let own = false;
  const deadline = Date.now() + 15_000;
  try {
    for (;;) {
      try {
        await session.query({ text: 'select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1', values: [slot] });
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        // Still active (55006) or the session broke: retry, on a new session if need be.
        if (/55006|is active/.test(messageOf(error))) {
          await delay(200);
          continue;
        }
        if (own) await session.close();
        session = await DbSession.open(primary.node.connection, APPLICATION);
        own = true;
      }
    }
  } finally {
    if (own) await session.close();
  }
}

async function startServer(pgCtl: string, owner: Owner, dataDir: string, port: number, signal: AbortSignal | undefined): Promise<{ ok: true } | { ok: false; portTaken: boolean; detail: string }> {
  const log = join(dataDir, REPLICA_LOG);
  const offset = await stat(log).then((s) => s.size, () => 0);
  // A clean environment: the caller's PGPASSWORD or PGPASSFILE must not reach the server (and its walreceiver).
  const result = await run(owner, pgCtl, ['start', '-D', dataDir, '-l', log, '-w', '-t', String(START_TIMEOUT_S)], plainEnv(), signal);
  if (result.code === 0) return { ok: true };
  const text = (await readFile(log, 'utf8').catch(() => '')).slice(offset);
  return { ok: false, portTaken: /could not bind|already in use/i.test(text), detail: `pg_ctl start failed (port ${port}): ${result.stderr.trim()}\n  --- ${log} ---\n  ${lastLines(text, 12)}` };
}

/** Waits until the primary shows the new node streaming, or the replica dies, or the time is up. */
async function waitStreaming(primary: PrimaryConnection, plan: ReplicaPlan, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let state = 'not connected';
  for (;;) {
    throwIfAborted(signal);
    const rows = await primary.session.query({ text: 'select state from pg_stat_replication where application_name = $1', values: [plan.name] });
    const states = rows.map((row) => stringOrNull(row, 'state'));
    if (states.includes('streaming')) return;
    if (states.length > 0 && states.every((one) => one === null)) {
      // Without pg_read_all_stats the state is hidden: its slot in use by a WAL sender is the sign instead.
      const [slot] = await primary.session.query({ text: 'select active from pg_replication_slots where slot_name = $1', values: [plan.slot] });
      if (slot !== undefined && boolean(slot, 'active')) return;
    }
    state = states.length === 0 ? 'not connected' : states.map((one) => one ?? 'hidden').join(', ');
    if ((await postmasterPid(plan.dataDir)) === undefined) {
      const log = await readFile(join(plan.dataDir, REPLICA_LOG), 'utf8').catch(() => '');
      throw new Error(`the replica stopped before it streamed:\n  ${lastLines(log, 12)}`);
    }
    if (Date.now() > deadline) {
      const log = await readFile(join(plan.dataDir, REPLICA_LOG), 'utf8').catch(() => '');
      throw new Error(`the replica did not stream within ${Math.round(timeoutMs / 1000)} s (pg_stat_replication on the primary: ${state}); its log ends:\n  ${lastLines(log, 12)}`);
    }
    await delay(200);
  }
}

/**
 * Carries out the plan (see the file comment). On failure or interrupt, undoes what it made and
 * throws ReplicaFailedError naming what was undone and what is left.
 */
export async function createReplica(plan: ReplicaPlan, primary: PrimaryConnection, options: CreateReplicaOptions): Promise<ReplicaCreated> {
  const started = Date.now();
  const progress = options.progress ?? (() => undefined);
  const { signal } = options;
  const owner = await resolveOwner(plan.owner, plan.dataDir);
  const pgBin = options.pgBin ?? (process.env['PGWARDEN_PG_BIN'] === '' ? undefined : process.env['PGWARDEN_PG_BIN']);
  const pgCtl = programPath(pgBin, plan.major, 'pg_ctl') ?? 'pg_ctl';
  const basebackup = programPath(pgBin, plan.major, 'pg_basebackup') ?? 'pg_basebackup';
  const spec = primary.node.connection;
  const made: Made = { slot: false, dir: 'none', started: false };
  let step = 0;
  let port = plan.port;
  try {
    throwIfAborted(signal);
    step = 1;
    const existed = existsSync(plan.dataDir);
    if (!existed) {
      await mkdir(plan.dataDir, { mode: 0o700 });
      made.dir = 'created';
    }
    if (isRoot()) await chown(plan.dataDir, owner.uid, owner.gid);
    await chmod(plan.dataDir, 0o700);
    await primary.session.query({ text: 'select pg_create_physical_replication_slot($1, true)', values: [plan.slot] });
    made.slot = true;
    progress(`replica: slot ${plan.slot} created on ${plan.primaryNode}`);

    throwIfAborted(signal);
    step = 2;
    progress(`replica: pg_basebackup into ${plan.dataDir} as ${owner.name}`);
    const password = passwordOf(spec);
    const env = { ...libpqEnv(spec, APPLICATION), ...(password === undefined ? {} : { PGPASSWORD: password }) };
    if (existed) made.dir = 'filled';
    const copy = await run(owner, basebackup, ['-D', plan.dataDir, '-X', 'stream', '-S', plan.slot, '-R', '-c', 'fast'], env, signal);
    throwIfAborted(signal);
    if (copy.code !== 0) throw new Error(`pg_basebackup failed: ${redact(copy.stderr.trim(), password === undefined ? [] : [password])}`);

    step = 3;
    await writeStandbySettings(plan, owner, port);
    progress(`replica: standby settings written to ${join(plan.dataDir, 'postgresql.auto.conf')}`);

    step = 4;
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(signal);
      const outcome = await startServer(pgCtl, owner, plan.dataDir, port, signal);
      made.started = true;
      if (outcome.ok) break;
      if (outcome.portTaken && plan.portChosen && attempt < 4) {
        // Someone took the chosen port between the check and the start: choose again.
        port = await freePort();
        await writeStandbySettings(plan, owner, port);
        continue;
      }
      throw new Error(outcome.portTaken ? `port ${port} on this host is already in use: ${outcome.detail}` : outcome.detail);
    }
    progress(`replica: started on port ${port}; waiting for it to stream`);

    step = 5;
    await waitStreaming(primary, plan, options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS, signal);
  } catch (error) {
    const title = plan.steps[step - 1]?.title ?? 'preparing';
    const { undone, left } = await undo(made, plan, primary, pgCtl, owner);
    const lines = [
      `replica create failed at step ${step} (${title}): ${messageOf(error)}`,
      undone.length === 0 ? 'Nothing had been changed.' : `Undone: ${undone.join('; ')}.`,
      left.length === 0 ? 'Nothing is left behind.' : `Left behind: ${left.join('; ')}.`,
    ];
    throw new ReplicaFailedError(lines.join('\n'), left.length === 0 ? 'fix the cause and run the same command again' : 'clean up what is left (above), then run the same command again', { cause: error });
  }
  const host = localHostFor(spec);
  const connection = publicUri(spec, [{ host, port }]);
  return {
    name: plan.name, slot: plan.slot, dataDir: plan.dataDir, port, connection,
    configSnippet: JSON.stringify({ name: plan.name, dsn: connection }),
    durationMs: Date.now() - started,
  };
}

/** Undoes what `made` records, in reverse order; every step is tried even when one fails. */
async function undo(made: Made, plan: ReplicaPlan, primary: PrimaryConnection, pgCtl: string, owner: Owner): Promise<{ undone: string[]; left: string[] }> {
  const undone: string[] = [];
  const left: string[] = [];
  if (made.started && (await postmasterPid(plan.dataDir)) !== undefined) {
    await stopServer(pgCtl, owner, plan.dataDir);
    if ((await postmasterPid(plan.dataDir)) === undefined) undone.push('stopped the replica');
    else left.push(`a running server in ${plan.dataDir} (stop it: pg_ctl stop -D ${plan.dataDir} -m immediate, as ${owner.name})`);
  }
  if (made.slot) {
    try {
      await dropSlot(primary, plan.slot);
      undone.push(`dropped slot ${plan.slot} on ${plan.primaryNode}`);
    } catch (error) {
      left.push(`slot ${plan.slot} on ${plan.primaryNode}, which keeps WAL until dropped (${messageOf(error)}): select pg_drop_replication_slot(${quoteSql(plan.slot)})`);
    }
  }
  if (made.dir !== 'none') {
    try {
      if (made.dir === 'created') {
        await rm(plan.dataDir, { recursive: true, force: true, maxRetries: 3 });
        undone.push(`removed ${plan.dataDir}`);
      } else {
        // It existed (empty) before this run: empty it again, keep the directory.
        for (const entry of await readdir(plan.dataDir)) await rm(join(plan.dataDir, entry), { recursive: true, force: true, maxRetries: 3 });
        undone.push(`emptied ${plan.dataDir} (it existed before, so it is kept)`);
      }
    } catch (error) {
      left.push(`files in ${plan.dataDir} (${messageOf(error)}): remove them by hand`);
    }
  }
  return { undone, left };
}

/** The success report: where it runs, how to reach it, how to add it to the config. */
export function renderCreated(created: ReplicaCreated, plan: ReplicaPlan): string {
  return [
    `Replica ${created.name} streams from ${plan.primaryNode} through slot ${created.slot} (${(created.durationMs / 1000).toFixed(1)} s).`,
    `  data directory: ${created.dataDir} (server log ${join(created.dataDir, REPLICA_LOG)})`,
    `  connection:     ${created.connection}`,
    `  primary_conninfo (no password): ${plan.primaryConninfo}`,
    `Add it to the cluster "${plan.cluster}" in the config file, under clusters[].nodes:`,
    `  ${created.configSnippet}`,
    `Reporting queries: docs/replicas.md. To remove it: stop it, delete ${created.dataDir}, and on the primary select pg_drop_replication_slot(${quoteSql(created.slot)}).`,
    '',
  ].join('\n');
}
