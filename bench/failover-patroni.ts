/**
 * bench/failover-patroni (issue 6): the Patroni reference figures of bench/failover, on the same
 * machine. A single-node etcd (v3 API) and three Patroni nodes with Patroni's default settings
 * (bootstrap.dcs left empty; the bench checks that REST GET /config overrides none of them, prints
 * them, and reads the TTL of Patroni's etcd leases back), PostgreSQL 15, asynchronous streaming
 * replication. Prints figures; asserts nothing.
 *
 *   npx tsx bench/failover-patroni.ts       (about 2 minutes; needs scripts/setup-bench.sh; runs as root)
 *   BENCH_PHASES=switchover,restart,failover  (the default: all three, in this order, on one cluster)
 *   BENCH_RESTARTS=3                          (how many kills the restart phase times)
 *   BENCH_LOGS=/some/dir                      (keep copies of the Patroni and etcd logs there)
 *
 * Phases:
 * - switchover: a client writes single-row INSERT transactions on one connection, one every 10 ms;
 *   on an error it reconnects to the node whose REST GET /primary answers 200. Meanwhile POST
 *   /switchover moves the leader to a streaming replica. Figures: the longest gap between two
 *   commits (the write stall), the failed transactions, and acknowledged rows missing afterwards.
 * - restart: kill -9 of the primary's postmaster, its Patroni agent alive. Patroni's default
 *   (primary_start_timeout 300) restarts PostgreSQL in place rather than failing over. Repeated
 *   BENCH_RESTARTS times (the cluster is whole again after each).
 * - failover: kill -9 of the primary's Patroni agent and then its postmaster (a lost node): a
 *   replica takes over once the leader key expires (ttl).
 * Restart and failover are timed from the postmaster's kill to the first INSERT that commits,
 * trying every node every 100 ms, each attempt on a new connection. Each kill comes after a random
 * wait of up to loop_wait once the cluster is healthy, so that it falls anywhere in Patroni's loop.
 *
 * Everything runs as the postgres OS user (Patroni refuses root) in one temporary directory, with
 * free ports on 127.0.0.1. The passwords are generated, kept in 0600 files of that directory and
 * in this process, never on a command line nor printed. Processes and files are removed on every
 * path, Ctrl-C included: every process whose working directory is inside the scratch directory is
 * killed, then the directory is deleted.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { freePort, waitFor } from '../test/support/cluster.js';
import { onProcessEnd } from '../test/support/exit-cleanup.js';
import { isUserError, messageOf, UserError } from '../src/errors.js';
import { table } from './backup-tools.js';

const host = '127.0.0.1';
const pgBin = '/usr/lib/postgresql/15/bin';
const scope = 'pgwarden-bench';
const writeTable = 'bench_writes';

// ---------------------------------------------------------------------------------------------
// Write probes: nothing Patroni-specific, so that bench/failover.ts can time pgwarden the same way.

/** Where a client connects to write. */
export interface WriteTarget {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string;
  readonly database: string;
}

/** The first write that committed after a kill. */
export interface WritesBack {
  /** Seconds from the kill to the COMMIT's acknowledgement. */
  readonly seconds: number;
  /** The node that accepted it. */
  readonly node: string;
  readonly attempts: number;
}

/** What a client writing through a switchover saw. */
export interface WriteLoopFigures {
  readonly committed: number;
  readonly failedTransactions: number;
  readonly failedConnects: number;
  /** The longest time between two acknowledged commits (the write stall), in seconds. */
  readonly longestGapS: number;
  /** The sequence numbers of every acknowledged row, to check none is lost afterwards. */
  readonly acknowledged: readonly number[];
  /** The node the client last wrote to. */
  readonly lastNode: string | undefined;
}

const seconds = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e9;

async function connect(target: WriteTarget, timeoutMs: number): Promise<pg.Client> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.user,
    database: target.database,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: 10_000,
    ...(target.password === undefined ? {} : { password: target.password }),
  });
  // A server killed under the client must not surface as an unhandled 'error' event.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

async function insertRow(client: pg.Client, phase: string, seq: number): Promise<void> {
  await client.query(`INSERT INTO ${writeTable} (phase, seq) VALUES ($1, $2)`, [phase, seq]);
}

/** Creates the table the write probes insert into (run it on the primary before measuring). */
export async function ensureWriteTable(target: WriteTarget): Promise<void> {
  const client = await connect(target, 5000);
  try {
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${writeTable} (phase text, seq bigint, at timestamptz DEFAULT clock_timestamp(), PRIMARY KEY (phase, seq))`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Tries an INSERT on every target every `intervalMs`, each attempt on a new connection, until one
 * commits; resolves with the seconds since `since` (a process.hrtime.bigint()) and that node.
 */
export async function firstWriteAfter(
  targets: readonly WriteTarget[],
  since: bigint,
  options: { readonly phase: string; readonly intervalMs?: number; readonly timeoutMs?: number },
): Promise<WritesBack> {
  const intervalMs = options.intervalMs ?? 100;
  const timeoutMs = options.timeoutMs ?? 300_000;
  let attempts = 0;
  let winner: WritesBack | undefined;
  const tryNode = async (target: WriteTarget): Promise<void> => {
    while (winner === undefined && seconds(since) * 1000 < timeoutMs) {
      const started = Date.now();
      attempts += 1;
      const seq = attempts;
      try {
        const client = await connect(target, Math.max(intervalMs, 1000));
        try {
          await insertRow(client, options.phase, seq);
          winner ??= { seconds: seconds(since), node: target.name, attempts };
        } finally {
          await client.end().catch(() => undefined);
        }
      } catch {
        // Refused, starting up, read-only: try again at the next tick.
      }
      await delay(Math.max(0, intervalMs - (Date.now() - started)));
    }
  };
  await Promise.all(targets.map(tryNode));
  if (winner === undefined) throw new Error(`no node accepted a write within ${timeoutMs / 1000} s`);
  return winner;
}

/**
 * Runs a client that commits one single-row INSERT every `intervalMs` on one connection while
 * `during` runs, `leadMs` before and `tailMs` after it. On an error the client reconnects to
 * whatever `findPrimary` names (polled every `reconnectMs`).
 */
export async function writeLoopDuring(
  findPrimary: () => Promise<WriteTarget | undefined>,
  during: () => Promise<void>,
  options: { readonly phase: string; readonly intervalMs?: number; readonly reconnectMs?: number; readonly leadMs?: number; readonly tailMs?: number },
): Promise<WriteLoopFigures> {
  const intervalMs = options.intervalMs ?? 10;
  const reconnectMs = options.reconnectMs ?? 50;
  let stop = false;
  let committed = 0;
  let failedTransactions = 0;
  let failedConnects = 0;
  let longestGapS = 0;
  let lastCommit: bigint | undefined;
  let seq = 0;
  let lastNode: string | undefined;
  const acknowledged: number[] = [];
  const loop = async (): Promise<void> => {
    let session: { client: pg.Client; target: WriteTarget } | undefined;
    while (!stop) {
      if (session === undefined) {
        const target = await findPrimary().catch(() => undefined);
        if (target === undefined) {
          await delay(reconnectMs);
          continue;
        }
        try {
          session = { client: await connect(target, 2000), target };
        } catch {
          failedConnects += 1;
          await delay(reconnectMs);
          continue;
        }
      }
      seq += 1;
      try {
        await insertRow(session.client, options.phase, seq);
        const now = process.hrtime.bigint();
        if (lastCommit !== undefined) longestGapS = Math.max(longestGapS, Number(now - lastCommit) / 1e9);
        lastCommit = now;
        committed += 1;
        acknowledged.push(seq);
        lastNode = session.target.name;
      } catch {
        failedTransactions += 1;
        await session.client.end().catch(() => undefined);
        session = undefined;
      }
      await delay(intervalMs);
    }
    await session?.client.end().catch(() => undefined);
  };
  const running = loop();
  try {
    await delay(options.leadMs ?? 2000);
    await during();
    await delay(options.tailMs ?? 3000);
  } finally {
    stop = true;
    await running;
  }
  return { committed, failedTransactions, failedConnects, longestGapS, acknowledged, lastNode };
}

/** How many of `acknowledged` (sequence numbers of `phase`) the table on `target` lacks. */
export async function missingRows(target: WriteTarget, phase: string, acknowledged: readonly number[]): Promise<number> {
  const client = await connect(target, 5000);
  try {
    const result = await client.query<{ missing: string }>(
      `SELECT count(*) AS missing FROM unnest($1::bigint[]) AS a(seq) WHERE NOT EXISTS (SELECT 1 FROM ${writeTable} w WHERE w.phase = $2 AND w.seq = a.seq)`,
      [acknowledged, phase],
    );
    return Number(result.rows[0]?.missing ?? Number.NaN);
  } finally {
    await client.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// The Patroni cluster.

/** One Patroni node: its agent, its PostgreSQL and their ports. */
export interface PatroniNode {
  readonly name: string;
  readonly pgPort: number;
  readonly restPort: number;
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  agent: ChildProcess | undefined;
}

/** A running etcd + Patroni cluster in a scratch directory. */
export interface PatroniCluster {
  readonly root: string;
  readonly nodes: readonly PatroniNode[];
  /** etcd's client URL (v3 API). */
  readonly etcdUrl: string;
  /** How a client reaches the node's PostgreSQL as the superuser. */
  target(node: PatroniNode): WriteTarget;
  /** The node whose REST GET /primary answers 200, if any. */
  primary(): Promise<PatroniNode | undefined>;
  /** The dynamic configuration in the DCS, read from a node's REST GET /config. */
  dynamicConfig(): Promise<Record<string, unknown>>;
  /** Kills every process and removes the scratch directory (synchronous, idempotent). */
  destroy(): void;
}

interface RestAnswer {
  readonly status: number;
  readonly body: string;
}

async function rest(node: PatroniNode, path: string, method = 'GET', body?: unknown, timeoutMs = 2000): Promise<RestAnswer> {
  const response = await fetch(`http://${host}:${node.restPort}${path}`, {
    method,
    signal: AbortSignal.timeout(timeoutMs),
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  return { status: response.status, body: await response.text() };
}

function postgresIds(): { uid: number; gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

// libpq variables of the caller's shell must not redirect Patroni's tools to another server.
function childEnv(): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG') && !name.startsWith('PATRONI')));
  return { ...env, HOME: '/var/lib/postgresql', USER: 'postgres', LOGNAME: 'postgres' };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids of processes whose working directory is inside `root` (postgres and its children chdir to the data directory). */
function processesUnder(root: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      if (cwd === root || cwd.startsWith(`${root}/`)) pids.push(pid);
    } catch {
      // Gone meanwhile, or a kernel thread.
    }
  }
  return pids;
}

/** The postmaster of `dataDir` per postmaster.pid, only if that process still is this data directory's postgres. */
export function postmasterPid(dataDir: string): number | undefined {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline[0]?.endsWith('/postgres') === true && cmdline.includes(dataDir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** SysV shared memory left by a postmaster killed with -9 (created by it, no longer attached). */
function orphanSegments(dataDirs: readonly string[]): number[] {
  const creators = new Set<number>();
  for (const dataDir of dataDirs) {
    try {
      creators.add(Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]));
    } catch {
      // No pid file: nothing left.
    }
  }
  const ids: number[] = [];
  for (const line of readFileSync('/proc/sysvipc/shm', 'utf8').split('\n').slice(1)) {
    const [, shmid, , , cpid, , nattch] = line.trim().split(/\s+/).map(Number);
    if (shmid !== undefined && cpid !== undefined && creators.has(cpid) && nattch === 0) ids.push(shmid);
  }
  return ids;
}

function destroyScratch(root: string, agents: readonly ChildProcess[], dataDirs: readonly string[]): void {
  // Agents first, so that none restarts its PostgreSQL; then an immediate shutdown of every
  // postmaster (which frees its shared memory); then whatever is left under the scratch directory.
  for (const agent of agents) {
    if (agent.pid !== undefined && agent.exitCode === null && agent.signalCode === null) {
      try {
        process.kill(-agent.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  const postmasters = dataDirs.map(postmasterPid).filter((pid): pid is number => pid !== undefined);
  for (const pid of postmasters) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Gone meanwhile.
    }
  }
  for (let waited = 0; waited < 10_000 && postmasters.some(alive); waited += 50) sleepSync(50);
  for (let round = 0; round < 100; round += 1) {
    const left = processesUnder(root);
    if (left.length === 0) break;
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
    sleepSync(50);
  }
  for (const shmid of orphanSegments(dataDirs)) {
    try {
      execFileSync('ipcrm', ['-m', String(shmid)]);
    } catch {
      // Removed meanwhile.
    }
  }
  const keepLogs = process.env['BENCH_LOGS'];
  if (keepLogs !== undefined && keepLogs !== '') {
    // Opt-in, for a run that went wrong: the agents' and etcd's logs (no passwords in them).
    mkdirSync(keepLogs, { recursive: true });
    for (const entry of readdirSync(root)) {
      for (const name of ['patroni.log', 'log']) {
        const file = join(root, entry, name);
        if (existsSync(file)) cpSync(file, join(keepLogs, `${entry}-${name}`));
      }
    }
  }
  rmSync(root, { recursive: true, force: true, maxRetries: 5 });
}

function spawnAsPostgres(command: string, args: readonly string[], cwd: string, logFile: string): ChildProcess {
  const { uid, gid } = postgresIds();
  const log = openSync(logFile, 'a', 0o600);
  chownSync(logFile, uid, gid);
  try {
    // detached: a process group of its own, so that a kill reaches the agent and its helpers.
    return spawn(command, [...args], { cwd, uid, gid, env: childEnv(), detached: true, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
}

function logTail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function writePrivate(file: string, text: string, uid: number, gid: number): void {
  writeFileSync(file, text, { mode: 0o600 });
  chownSync(file, uid, gid);
}

function makeDir(dir: string, uid: number, gid: number): void {
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, uid, gid);
}

/** Starts etcd and `count` Patroni nodes (node1 bootstraps, the others clone it) and waits until every replica streams. */
export async function startPatroniCluster(count = 3): Promise<PatroniCluster> {
  const { uid, gid } = postgresIds();
  const root = mkdtempSync(join(tmpdir(), 'pgwarden-bench-patroni-'));
  chownSync(root, uid, gid);
  const agents: ChildProcess[] = [];
  const dataDirs: string[] = [];
  let destroyed = false;
  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    destroyScratch(root, agents, dataDirs);
  };
  onProcessEnd(destroy);
  const superuser = { username: 'postgres', password: randomBytes(18).toString('base64url') };
  const replication = { username: 'replicator', password: randomBytes(18).toString('base64url') };

  try {
    const etcdDir = join(root, 'etcd');
    makeDir(etcdDir, uid, gid);
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const clientUrl = `http://${host}:${clientPort}`;
    const peerUrl = `http://${host}:${peerPort}`;
    const etcdLog = join(etcdDir, 'log');
    agents.push(
      spawnAsPostgres('etcd', [
        '--name=bench', `--data-dir=${join(etcdDir, 'data')}`,
        `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=bench=${peerUrl}`, '--initial-cluster-state=new', `--initial-cluster-token=${scope}-${process.pid}`,
        '--logger=zap', '--log-outputs=stderr',
      ], etcdDir, etcdLog),
    );
    await waitFor('etcd to answer /health', async () => {
      const response = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1000) });
      return response.ok && ((await response.json()) as { health?: string }).health === 'true';
    }, { timeoutMs: 30_000 }).catch((err: unknown) => {
      throw new Error(`${messageOf(err)}\netcd log:\n${logTail(etcdLog)}`);
    });

    const nodes: PatroniNode[] = [];
    for (let index = 1; index <= count; index += 1) {
      const dir = join(root, `node${index}`);
      makeDir(dir, uid, gid);
      const node: PatroniNode = {
        name: `node${index}`, pgPort: await freePort(), restPort: await freePort(), dir,
        dataDir: join(dir, 'data'), logFile: join(dir, 'patroni.log'), agent: undefined,
      };
      dataDirs.push(node.dataDir);
      // JSON is YAML. An empty bootstrap.dcs: ttl, loop_wait, retry_timeout and the rest stay Patroni's defaults.
      const config = {
        scope,
        namespace: '/pgwarden-bench/',
        name: node.name,
        restapi: { listen: `${host}:${node.restPort}`, connect_address: `${host}:${node.restPort}` },
        etcd3: { hosts: [`${host}:${clientPort}`] },
        bootstrap: {
          dcs: {},
          pg_hba: [
            'local all all trust',
            `host replication ${replication.username} ${host}/32 scram-sha-256`,
            `host all all ${host}/32 scram-sha-256`,
          ],
        },
        postgresql: {
          listen: `${host}:${node.pgPort}`,
          connect_address: `${host}:${node.pgPort}`,
          data_dir: node.dataDir,
          bin_dir: pgBin,
          pgpass: join(dir, 'pgpass'),
          authentication: { superuser, replication },
          parameters: { unix_socket_directories: dir },
        },
      };
      writePrivate(join(dir, 'patroni.yml'), JSON.stringify(config, null, 2), uid, gid);
      nodes.push(node);
    }

    const cluster: PatroniCluster = {
      root,
      nodes,
      etcdUrl: clientUrl,
      target: (node) => ({ name: node.name, host, port: node.pgPort, user: superuser.username, password: superuser.password, database: 'postgres' }),
      primary: async () => {
        const answers = await Promise.all(nodes.map((node) => rest(node, '/primary', 'GET', undefined, 1000).catch(() => undefined)));
        return nodes.find((_, index) => answers[index]?.status === 200);
      },
      dynamicConfig: async () => {
        for (const node of nodes) {
          const answer = await rest(node, '/config').catch(() => undefined);
          if (answer?.status === 200) return JSON.parse(answer.body) as Record<string, unknown>;
        }
        throw new Error('no Patroni node answered GET /config');
      },
      destroy,
    };
    const startAgent = (node: PatroniNode): void => {
      node.agent = spawnAsPostgres('patroni', [join(node.dir, 'patroni.yml')], node.dir, node.logFile);
      agents.push(node.agent);
    };
    const [first, ...others] = nodes;
    if (first === undefined) throw new Error('a Patroni cluster needs at least one node');
    startAgent(first);
    const bootstrapped = await waitFor(`${first.name} to bootstrap and lead`, async () => {
      if (first.agent?.exitCode !== null) return 'exited';
      return (await cluster.primary()) === first ? 'leading' : undefined;
    }, { timeoutMs: 120_000, intervalMs: 250 }).catch(() => 'timed out');
    if (bootstrapped !== 'leading') throw new Error(`${first.name} did not bootstrap (${bootstrapped}); its log:\n${logTail(first.logFile)}`);
    for (const node of others) startAgent(node);
    await waitHealthy(cluster, others.length);
    return cluster;
  } catch (err) {
    destroy();
    throw err;
  }
}

/** Waits until a primary is named by the REST API and `replicas` replicas stream from it; returns it. */
export async function waitHealthy(cluster: PatroniCluster, replicas: number, timeoutMs = 180_000): Promise<PatroniNode> {
  const logs = (): string => cluster.nodes.map((node) => `${node.name} log:\n${logTail(node.logFile, 10)}`).join('\n');
  const outcome = await waitFor(`a primary with ${replicas} streaming replicas`, async () => {
    const exited = cluster.nodes.find((node) => node.agent !== undefined && (node.agent.exitCode !== null || node.agent.signalCode !== null));
    if (exited !== undefined) return { exited };
    const primary = await cluster.primary();
    if (primary === undefined) return undefined;
    const client = await connect(cluster.target(primary), 2000);
    try {
      // By member name: a clone's pg_basebackup also shows as a 'streaming' WAL sender.
      const others = cluster.nodes.filter((node) => node !== primary).map((node) => node.name);
      const result = await client.query<{ streaming: number }>(
        "SELECT count(DISTINCT application_name)::int AS streaming FROM pg_stat_replication WHERE state = 'streaming' AND application_name = ANY($1)",
        [others],
      );
      return (result.rows[0]?.streaming ?? 0) >= replicas ? { primary } : undefined;
    } finally {
      await client.end().catch(() => undefined);
    }
  }, { timeoutMs, intervalMs: 250 }).catch((err: unknown) => {
    throw new Error(`${messageOf(err)}\n${logs()}`);
  });
  if ('exited' in outcome) throw new Error(`the Patroni agent of ${outcome.exited.name} exited\n${logs()}`);
  return outcome.primary;
}

// ---------------------------------------------------------------------------------------------
// The measurements.

/** A switchover through Patroni's REST API, timed from a client's side. */
export interface SwitchoverFigures extends Omit<WriteLoopFigures, 'acknowledged'> {
  readonly from: string;
  readonly to: string;
  /** Seconds POST /switchover took to answer (Patroni polls the result once a second). */
  readonly requestS: number;
  readonly answer: string;
  /** Acknowledged rows not found on the new primary afterwards. */
  readonly lost: number;
}

/** Moves the leader to a streaming replica with POST /switchover while a client writes; the cluster ends healthy again. */
export async function measurePatroniSwitchover(cluster: PatroniCluster): Promise<SwitchoverFigures> {
  const from = await waitHealthy(cluster, cluster.nodes.length - 1);
  const to = cluster.nodes.find((node) => node !== from)!;
  const phase = `switchover-${Date.now()}`;
  let requestS = 0;
  let answer = '';
  const figures = await writeLoopDuring(
    async () => {
      const primary = await cluster.primary();
      return primary === undefined ? undefined : cluster.target(primary);
    },
    async () => {
      const started = process.hrtime.bigint();
      const response = await rest(from, '/switchover', 'POST', { leader: from.name, candidate: to.name }, 60_000);
      requestS = seconds(started);
      answer = `${response.status} ${response.body.trim()}`;
      if (response.status !== 200) throw new Error(`POST /switchover answered ${answer}`);
      await waitFor(`writes to reach ${to.name}`, async () => (await cluster.primary()) === to, { timeoutMs: 60_000 });
    },
    { phase },
  );
  const lost = await missingRows(cluster.target(to), phase, figures.acknowledged);
  await waitHealthy(cluster, cluster.nodes.length - 1);
  const { committed, failedTransactions, failedConnects, longestGapS, lastNode } = figures;
  return { committed, failedTransactions, failedConnects, longestGapS, lastNode, from: from.name, to: to.name, requestS, answer, lost };
}

/** A kill of the primary, timed to the first write that commits anywhere. */
export interface KillFigures {
  readonly killed: string;
  readonly writesBack: WritesBack;
  readonly sameNode: boolean;
  /** The random wait between the cluster being healthy and the kill. */
  readonly waitedS: number;
}

/**
 * kill -9 of the primary's postmaster; with `loseNode`, its Patroni agent is killed first (a lost
 * node), otherwise the agent stays (and, by Patroni's default, restarts PostgreSQL in place). The
 * kill comes after a random wait of up to one loop_wait, so that it falls anywhere in the agents'
 * loop (a kill right after a loop waits longest for the next one).
 */
export async function measurePatroniKill(cluster: PatroniCluster, loseNode: boolean): Promise<KillFigures> {
  const primary = await waitHealthy(cluster, cluster.nodes.length - 1);
  const waitedS = Math.random() * patroniDefaults.loop_wait;
  await delay(waitedS * 1000);
  const pid = postmasterPid(primary.dataDir);
  if (pid === undefined) throw new Error(`no postmaster found for ${primary.name}`);
  const agentPid = primary.agent?.pid;
  if (loseNode && agentPid === undefined) throw new Error(`${primary.name} has no Patroni agent to kill`);
  const killedAt = process.hrtime.bigint();
  if (loseNode && agentPid !== undefined) process.kill(-agentPid, 'SIGKILL');
  process.kill(pid, 'SIGKILL');
  const writesBack = await firstWriteAfter(cluster.nodes.map((node) => cluster.target(node)), killedAt, {
    phase: `${loseNode ? 'failover' : 'restart'}-${Date.now()}`,
  });
  return { killed: primary.name, writesBack, sameNode: writesBack.node === primary.name, waitedS };
}

/** Everything one run of this benchmark measured. */
export interface PatroniFigures {
  readonly versions: { readonly patroni: string; readonly etcd: string; readonly postgres: string };
  /** The timing observed: etcd's lease TTLs (Patroni's ttl) and the median interval of the HA loop (loop_wait). */
  readonly settings: { readonly leaseTtlS: readonly number[] };
  readonly switchover?: SwitchoverFigures;
  readonly restarts?: readonly KillFigures[];
  readonly failover?: KillFigures;
}

export type PatroniPhase = 'switchover' | 'restart' | 'failover';

/**
 * Patroni 3.0.2's built-in defaults (Config.__DEFAULT_CONFIG in patroni/config.py); the bench
 * leaves bootstrap.dcs empty and checks that the DCS configuration sets none of them.
 */
export const patroniDefaults = {
  ttl: 30,
  loop_wait: 10,
  retry_timeout: 10,
  primary_start_timeout: 300,
  maximum_lag_on_failover: 1048576,
  synchronous_mode: false,
} as const;

/** The granted TTL of every etcd lease (Patroni holds its leader and member keys on one lease per node, of ttl seconds). */
async function leaseTtls(etcdUrl: string): Promise<number[]> {
  const post = async (path: string, body: unknown): Promise<unknown> => {
    const response = await fetch(`${etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(2000) });
    return response.json();
  };
  const { leases = [] } = (await post('/v3/lease/leases', {})) as { leases?: { ID: string }[] };
  const ttls = await Promise.all(leases.map(async ({ ID }) => Number(((await post('/v3/lease/timetolive', { ID })) as { grantedTTL?: string }).grantedTTL)));
  return [...new Set(ttls)].sort((a, b) => a - b);
}

function versionOf(command: string, args: readonly string[]): string {
  return execFileSync(command, [...args], { encoding: 'utf8' }).split('\n')[0]?.trim() ?? '?';
}

/** Starts a cluster, runs the phases in order (failover last: it loses a node), and removes everything. */
export async function runPatroniBench(
  phases: readonly PatroniPhase[] = ['switchover', 'restart', 'failover'],
  restartKills = 3,
): Promise<PatroniFigures> {
  const cluster = await startPatroniCluster(3);
  try {
    const primary = await waitHealthy(cluster, 2);
    await ensureWriteTable(cluster.target(primary));
    const dcsConfig = await cluster.dynamicConfig();
    const overridden = Object.keys(patroniDefaults).filter((name) => name in dcsConfig);
    if (overridden.length > 0) throw new Error(`the DCS configuration sets ${overridden.join(', ')}: not Patroni's defaults`);
    const client = await connect(cluster.target(primary), 5000);
    const postgres = (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? '?';
    await client.end();
    const versions = { patroni: versionOf('patroni', ['--version']), etcd: versionOf('etcd', ['--version']), postgres };
    let figures: PatroniFigures = { versions, settings: { leaseTtlS: [] } };
    const ordered = (['switchover', 'restart', 'failover'] as const).filter((phase) => phases.includes(phase));
    for (const phase of ordered) {
      console.error(`… ${phase}`);
      if (phase === 'switchover') figures = { ...figures, switchover: await measurePatroniSwitchover(cluster) };
      if (phase === 'restart') {
        const restarts: KillFigures[] = [];
        for (let kill = 0; kill < restartKills; kill += 1) restarts.push(await measurePatroniKill(cluster, false));
        figures = { ...figures, restarts };
      }
      if (phase === 'failover') figures = { ...figures, failover: await measurePatroniKill(cluster, true) };
    }
    return { ...figures, settings: { leaseTtlS: await leaseTtls(cluster.etcdUrl) } };
  } finally {
    cluster.destroy();
  }
}

const s2 = (value: number): string => `${value.toFixed(2)} s`;

/** The figures as printable text: the settings, then one row per measurement. */
export function patroniReport(figures: PatroniFigures): string {
  const { versions, settings } = figures;
  const lines = [
    `${versions.patroni}, etcd ${versions.etcd.replace(/^etcd Version: /, '')}, PostgreSQL ${versions.postgres}; 3 nodes on ${host}, asynchronous streaming replication`,
    `Patroni settings: the defaults (bootstrap.dcs empty; REST GET /config overrides none): ${Object.entries(patroniDefaults).map(([name, value]) => `${name} ${String(value)}`).join(', ')}`,
    `Observed: etcd lease TTL ${settings.leaseTtlS.join(', ')} s (Patroni's leader and member keys)`,
    '',
  ];
  const rows: string[][] = [['measure', 'figure', 'detail']];
  const { switchover, restarts = [], failover } = figures;
  const killDetail = (kill: KillFigures, outcome: string): string =>
    `${kill.killed} killed ${kill.waitedS.toFixed(1)} s after the cluster was healthy; write on ${kill.writesBack.node} (${outcome})`;
  if (switchover !== undefined) {
    rows.push(
      ['switchover: write stall (longest gap between commits)', s2(switchover.longestGapS), `${switchover.from} → ${switchover.to}; one INSERT every 10 ms, one connection`],
      ['switchover: failed transactions', String(switchover.failedTransactions), `${switchover.committed} committed; ${switchover.failedConnects} failed reconnects; ${switchover.lost} acknowledged rows lost`],
      ['switchover: POST /switchover answered after', s2(switchover.requestS), switchover.answer],
    );
  }
  for (const [index, kill] of restarts.entries()) {
    rows.push([
      `kill -9 postmaster, agent alive (${index + 1}/${restarts.length}): first write after`, s2(kill.writesBack.seconds),
      killDetail(kill, kill.sameNode ? 'restarted in place, no failover' : 'new primary'),
    ]);
  }
  if (failover !== undefined) {
    rows.push([
      'kill -9 agent + postmaster (node lost): first write after', s2(failover.writesBack.seconds),
      killDetail(failover, failover.sameNode ? 'same node' : 'new primary'),
    ]);
  }
  return [...lines, table(rows)].join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new UserError('bench/failover-patroni needs root', 'run it as root: it starts etcd, Patroni and PostgreSQL as the postgres OS user');
  for (const tool of ['patroni', 'etcd']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new UserError(`${tool} is not installed`, 'run scripts/setup-bench.sh as root (Debian packages patroni and etcd-server)');
    }
  }
  const phases = (process.env['BENCH_PHASES'] ?? 'switchover,restart,failover').split(',').map((phase) => phase.trim());
  const known = phases.filter((phase): phase is PatroniPhase => phase === 'switchover' || phase === 'restart' || phase === 'failover');
  if (known.length !== phases.length) {
    throw new UserError(`BENCH_PHASES=${phases.join(',')} names an unknown phase`, 'list some of switchover, restart, failover, separated by commas');
  }
  const kills = Number(process.env['BENCH_RESTARTS'] ?? 3);
  if (!Number.isInteger(kills) || kills < 1) throw new UserError(`BENCH_RESTARTS=${process.env['BENCH_RESTARTS'] ?? ''} is not a positive whole number`, 'give how many times the restart phase kills the postmaster, such as 3');
  console.log(patroniReport(await runPatroniBench(known, kills)));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.exitCode = 1;
    if (!isUserError(err)) throw err;
    console.error(`failover-patroni: ${err.message}${err.hint === undefined ? '' : `: ${err.hint}`}`);
  });
}
