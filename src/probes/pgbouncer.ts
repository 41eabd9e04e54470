/**
 * PgBouncer, read from its admin console: pools (who waits, and for how long), traffic per
 * database with rates, and every client and server connection. Column sets vary between PgBouncer
 * versions (cancel-request counters were split in 1.18, maxwait_us came in 1.8, application_name
 * in 1.18), so version-dependent columns are read by name and may be absent.
 */
import type { Row } from '../db/types.js';
import type { Probe } from './types.js';
import { number, rowsOf, string } from './values.js';

export interface PgBouncerPool {
  readonly database: string;
  readonly user: string;
  readonly clActive: number;
  readonly clWaiting: number;
  /** Clients that sent a cancel request (all cancel-request columns summed); null when this version does not report it. */
  readonly clCancelReq: number | null;
  readonly svActive: number;
  readonly svIdle: number;
  readonly svUsed: number;
  readonly svTested: number;
  readonly svLogin: number;
  /** How long the oldest waiting client has waited, in seconds (maxwait + maxwait_us). */
  readonly maxWaitSeconds: number;
  /** session, transaction or statement; null before PgBouncer reported it. */
  readonly poolMode: string | null;
}

/** Per-second figures between two snapshots; null when there is no comparable previous snapshot. */
export interface PgBouncerRates {
  readonly intervalSeconds: number;
  readonly xactsPerSecond: number | null;
  readonly queriesPerSecond: number;
  readonly receivedBytesPerSecond: number;
  readonly sentBytesPerSecond: number;
  /** Seconds clients spent waiting for a server, per second of wall time. */
  readonly waitSecondsPerSecond: number | null;
  /** Mean query time over the interval; null when no query ran. */
  readonly avgQuerySeconds: number | null;
  /** Mean transaction time over the interval; null when no transaction ran or it is not reported. */
  readonly avgXactSeconds: number | null;
}

export interface PgBouncerDatabaseStats {
  readonly database: string;
  /** null before PgBouncer 1.8, which counted only requests. */
  readonly totalXactCount: number | null;
  readonly totalQueryCount: number;
  readonly totalReceivedBytes: number;
  readonly totalSentBytes: number;
  readonly totalXactSeconds: number | null;
  readonly totalQuerySeconds: number;
  readonly totalWaitSeconds: number | null;
  /** PgBouncer's own averages over its last stats_period (60 s by default). */
  readonly avgXactSeconds: number | null;
  readonly avgQuerySeconds: number | null;
  readonly avgWaitSeconds: number | null;
  readonly rates: PgBouncerRates | null;
}

export interface PgBouncerConnection {
  readonly type: 'client' | 'server';
  readonly user: string;
  readonly database: string;
  /** active, waiting, idle, used, tested, login… as PgBouncer names them. */
  readonly state: string;
  /** Peer address ("unix" for a Unix socket); for servers, the PostgreSQL host. */
  readonly addr: string | null;
  /** Peer port (for a Unix-socket client, PgBouncer reports the client's pid here). */
  readonly port: number | null;
  /** null when PgBouncer printed the time in a zone other than UTC/GMT or a numeric offset. */
  readonly connectTime: Date | null;
  readonly requestTime: Date | null;
  /** Current waiting time in seconds (wait + wait_us); meaningful for waiting clients; null when not reported. */
  readonly waitSeconds: number | null;
  /** This connection's id; a linked peer names it in its `link`. */
  readonly ptr: string;
  /** The ptr of the server (for a client) or client (for a server) it is paired with, or null. */
  readonly link: string | null;
  /** For servers, the PostgreSQL backend pid; null when unknown. */
  readonly remotePid: number | null;
  readonly applicationName: string | null;
}

export interface PgBouncerTotals {
  readonly clientsActive: number;
  readonly clientsWaiting: number;
  readonly serversActive: number;
  readonly serversIdle: number;
  /** The longest wait over all pools, in seconds. */
  readonly maxWaitSeconds: number;
}

export interface PgBouncerSnapshot {
  /** e.g. "PgBouncer 1.18.0"; null when SHOW VERSION gave no row. */
  readonly version: string | null;
  /** major * 10000 + minor * 100 + patch, e.g. 11800. */
  readonly versionNum: number | null;
  readonly pools: readonly PgBouncerPool[];
  readonly stats: readonly PgBouncerDatabaseStats[];
  readonly servers: readonly PgBouncerConnection[];
  /** Client connections, without pgwarden's own (application_name pgwarden…). */
  readonly clients: readonly PgBouncerConnection[];
  /** SHOW LISTS: item counts (databases, users, pools, free_clients, used_clients…). */
  readonly lists: Readonly<Record<string, number>>;
  /** Over all pools except the admin console's own "pgbouncer" pseudo-database. */
  readonly totals: PgBouncerTotals;
}

/** The admin console's pseudo-database; its pool holds only console sessions such as pgwarden's. */
const adminDatabase = 'pgbouncer';

type Scalar = string | number | boolean | Date;

// The console sends '' for some unset values; unlike Number(''), treat it as absent.
function optional(row: Row, key: string): Scalar | null {
  if (!(key in row)) return null;
  const value = row[key];
  if (value === undefined || value === null || value === '') return null;
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value instanceof Date) return value;
  if (typeof value === 'bigint') return Number(value);
  throw new Error(`column "${key}" has an unexpected value: ${JSON.stringify(value)}`);
}

function optionalNumber(row: Row, key: string): number | null {
  const value = optional(row, key);
  if (value === null) return null;
  const n = typeof value === 'number' ? value : Number(value);
  if (Number.isNaN(n)) throw new Error(`column "${key}" is not a number: ${String(value)}`);
  return n;
}

function optionalString(row: Row, key: string): string | null {
  const value = optional(row, key);
  return value === null ? null : String(value);
}

/** Seconds plus an optional microseconds column, as maxwait/maxwait_us and wait/wait_us come. */
function secondsWithMicros(row: Row, secondsKey: string, microsKey: string): number | null {
  const seconds = optionalNumber(row, secondsKey);
  if (seconds === null) return null;
  return seconds + (optionalNumber(row, microsKey) ?? 0) / 1e6;
}

function microsToSeconds(value: number | null): number | null {
  return value === null ? null : value / 1e6;
}

// PgBouncer prints times as "2024-05-01 10:00:00 UTC" in its own local zone; only an unambiguous zone is trusted.
const timePattern = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(UTC|GMT|Z|[+-]\d{2}(?::?\d{2})?)$/;

function time(row: Row, key: string): Date | null {
  const value = optional(row, key);
  if (value === null) return null;
  if (value instanceof Date) return value;
  const match = timePattern.exec(String(value).trim());
  if (match === null) return null;
  const [, day = '', clock = '', zone = 'Z'] = match;
  let offset = zone === 'UTC' || zone === 'GMT' ? 'Z' : zone;
  if (/^[+-]\d{2}$/.test(offset)) offset += ':00';
  else if (/^[+-]\d{4}$/.test(offset)) offset = `${offset.slice(0, 3)}:${offset.slice(3)}`;
  const date = new Date(`${day}T${clock}${offset}`);
  // PgBouncer shows the epoch for times that were never set.
  return Number.isNaN(date.getTime()) || date.getTime() === 0 ? null : date;
}

function parseVersion(text: string | null): number | null {
  const match = text === null ? null : /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (match === null) return null;
  return Number(match[1]) * 10000 + Number(match[2]) * 100 + Number(match[3] ?? 0);
}

function cancelRequests(row: Row): number | null {
  const parts = ['cl_cancel_req', 'cl_active_cancel_req', 'cl_waiting_cancel_req'].map((key) => optionalNumber(row, key)).filter((n): n is number => n !== null);
  return parts.length === 0 ? null : parts.reduce((sum, n) => sum + n, 0);
}

function parsePool(row: Row): PgBouncerPool {
  return {
    database: string(row, 'database'),
    user: string(row, 'user'),
    clActive: number(row, 'cl_active'),
    clWaiting: number(row, 'cl_waiting'),
    clCancelReq: cancelRequests(row),
    svActive: number(row, 'sv_active'),
    svIdle: number(row, 'sv_idle'),
    svUsed: number(row, 'sv_used'),
    svTested: number(row, 'sv_tested'),
    svLogin: number(row, 'sv_login'),
    maxWaitSeconds: secondsWithMicros(row, 'maxwait', 'maxwait_us') ?? 0,
    poolMode: optionalString(row, 'pool_mode'),
  };
}

function perSecond(current: number | null, before: number | null, seconds: number): number | null {
  if (current === null || before === null) return null;
  return (current - before) / seconds;
}

function ratio(numerator: number | null, denominator: number | null): number | null {
  if (numerator === null || denominator === null || denominator <= 0) return null;
  return numerator / denominator;
}

// Counters only grow; a fall means PgBouncer restarted, and the interval says nothing.
function rates(current: Omit<PgBouncerDatabaseStats, 'rates'>, before: PgBouncerDatabaseStats | undefined, seconds: number): PgBouncerRates | null {
  if (before === undefined || seconds <= 0) return null;
  const counters: (keyof Omit<PgBouncerDatabaseStats, 'rates' | 'database'>)[] = [
    'totalXactCount', 'totalQueryCount', 'totalReceivedBytes', 'totalSentBytes', 'totalXactSeconds', 'totalQuerySeconds', 'totalWaitSeconds',
  ];
  for (const key of counters) {
    const now = current[key];
    const then = before[key];
    if (now !== null && then !== null && now < then) return null;
  }
  const delta = (key: 'totalXactCount' | 'totalQueryCount' | 'totalXactSeconds' | 'totalQuerySeconds'): number | null => {
    const now = current[key];
    const then = before[key];
    return now === null || then === null ? null : now - then;
  };
  return {
    intervalSeconds: seconds,
    xactsPerSecond: perSecond(current.totalXactCount, before.totalXactCount, seconds),
    queriesPerSecond: (current.totalQueryCount - before.totalQueryCount) / seconds,
    receivedBytesPerSecond: (current.totalReceivedBytes - before.totalReceivedBytes) / seconds,
    sentBytesPerSecond: (current.totalSentBytes - before.totalSentBytes) / seconds,
    waitSecondsPerSecond: perSecond(current.totalWaitSeconds, before.totalWaitSeconds, seconds),
    avgQuerySeconds: ratio(delta('totalQuerySeconds'), delta('totalQueryCount')),
    avgXactSeconds: ratio(delta('totalXactSeconds'), delta('totalXactCount')),
  };
}

function parseStats(row: Row): Omit<PgBouncerDatabaseStats, 'rates'> {
  // Before 1.8 there were only "requests": total_requests, avg_query (µs).
  const queries = optionalNumber(row, 'total_query_count') ?? optionalNumber(row, 'total_requests') ?? 0;
  return {
    database: string(row, 'database'),
    totalXactCount: optionalNumber(row, 'total_xact_count'),
    totalQueryCount: queries,
    totalReceivedBytes: optionalNumber(row, 'total_received') ?? 0,
    totalSentBytes: optionalNumber(row, 'total_sent') ?? 0,
    totalXactSeconds: microsToSeconds(optionalNumber(row, 'total_xact_time')),
    totalQuerySeconds: microsToSeconds(optionalNumber(row, 'total_query_time')) ?? 0,
    totalWaitSeconds: microsToSeconds(optionalNumber(row, 'total_wait_time')),
    avgXactSeconds: microsToSeconds(optionalNumber(row, 'avg_xact_time')),
    avgQuerySeconds: microsToSeconds(optionalNumber(row, 'avg_query_time') ?? optionalNumber(row, 'avg_query')),
    avgWaitSeconds: microsToSeconds(optionalNumber(row, 'avg_wait_time')),
  };
}

// 0 means PgBouncer has not learned the backend pid (or the row is a client).
function backendPid(row: Row): number | null {
  const pid = optionalNumber(row, 'remote_pid');
  return pid === null || pid === 0 ? null : pid;
}

function parseConnection(row: Row, type: 'client' | 'server'): PgBouncerConnection {
  return {
    type,
    user: string(row, 'user'),
    database: string(row, 'database'),
    state: string(row, 'state'),
    addr: optionalString(row, 'addr'),
    port: optionalNumber(row, 'port'),
    connectTime: time(row, 'connect_time'),
    requestTime: time(row, 'request_time'),
    waitSeconds: secondsWithMicros(row, 'wait', 'wait_us'),
    ptr: optionalString(row, 'ptr') ?? '',
    link: optionalString(row, 'link'),
    remotePid: backendPid(row),
    applicationName: optionalString(row, 'application_name'),
  };
}

/** The PgBouncer probe: SHOW POOLS, STATS, SERVERS, CLIENTS, LISTS and VERSION on the admin console. */
export const pgbouncerProbe: Probe<PgBouncerSnapshot> = {
  id: 'pgbouncer',
  title: 'PgBouncer',
  target: 'pgbouncer',
  cadenceMs: 2000,
  // Runs against PgBouncer, not PostgreSQL: no server version applies.
  minServerVersion: 0,
  queries: () => ({
    pools: { text: 'SHOW POOLS' },
    stats: { text: 'SHOW STATS' },
    servers: { text: 'SHOW SERVERS' },
    clients: { text: 'SHOW CLIENTS' },
    lists: { text: 'SHOW LISTS' },
    version: { text: 'SHOW VERSION' },
  }),
  parse(rows, context) {
    const pools = rowsOf(rows, 'pools').map(parsePool);
    const previous = context.previous;
    const seconds = previous === undefined || context.previousAt === undefined ? 0 : (context.now.getTime() - context.previousAt.getTime()) / 1000;
    const stats = rowsOf(rows, 'stats').map((row) => {
      const current = parseStats(row);
      const before = previous?.stats.find((s) => s.database === current.database);
      return { ...current, rates: rates(current, before, seconds) };
    });
    const lists: Record<string, number> = {};
    for (const row of rowsOf(rows, 'lists')) lists[string(row, 'list')] = number(row, 'items');
    const versionRow = rowsOf(rows, 'version')[0];
    const version = versionRow === undefined ? null : optionalString(versionRow, 'version');
    const counted = pools.filter((pool) => pool.database !== adminDatabase);
    const sum = (pick: (pool: PgBouncerPool) => number): number => counted.reduce((total, pool) => total + pick(pool), 0);
    return {
      version,
      versionNum: parseVersion(version),
      pools,
      stats,
      servers: rowsOf(rows, 'servers').map((row) => parseConnection(row, 'server')),
      clients: rowsOf(rows, 'clients')
        .map((row) => parseConnection(row, 'client'))
        .filter((client) => !(client.applicationName ?? '').startsWith('pgwarden')),
      lists,
      totals: {
        clientsActive: sum((pool) => pool.clActive),
        clientsWaiting: sum((pool) => pool.clWaiting),
        serversActive: sum((pool) => pool.svActive),
        serversIdle: sum((pool) => pool.svIdle),
        maxWaitSeconds: counted.reduce((max, pool) => Math.max(max, pool.maxWaitSeconds), 0),
      },
    };
  },
};
