/**
 * The statements that cost the most (pg_stat_statements), with rates over the interval since the
 * previous snapshot. The counters are never reset by pgwarden: rates come from diffing snapshots,
 * and a reset by someone else (falling counters, a new stats_reset) is detected and reported.
 */
import type { Query, Row, ServerInfo } from '../db/types.js';
import type { Probe, Unsupported } from './types.js';
import { booleanOrNull, dateOrNull, number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

/** Statements kept in a snapshot: the most expensive by total execution time. */
export const statementsLimit = 100;

/** What identifies a pg_stat_statements entry. */
export interface StatementKey {
  /** A 64-bit hash: kept as text, it does not fit a double. Null when this role may not see it. */
  readonly queryId: string | null;
  readonly userId: number;
  readonly dbId: number;
  /** Top-level statement or nested in a function (1.9 / PostgreSQL 14+; null before). */
  readonly toplevel: boolean | null;
}

/** Change over the interval since the previous snapshot. */
export interface StatementInterval {
  readonly calls: number;
  readonly callsPerSecond: number;
  readonly execMs: number;
  /** Milliseconds of execution per second of wall time (1000 = one backend busy all the time). */
  readonly execMsPerSecond: number;
  /** Mean execution time of the calls in the interval; null without calls. */
  readonly meanExecMs: number | null;
  readonly rows: number;
  readonly sharedBlksHit: number;
  readonly sharedBlksRead: number;
  readonly tempBlksRead: number;
  readonly tempBlksWritten: number;
}

export interface Statement extends StatementKey {
  readonly user: string | null;
  readonly database: string | null;
  /** The first 1,024 characters of the normalized text. */
  readonly query: string;
  readonly calls: number;
  readonly totalExecMs: number;
  readonly meanExecMs: number;
  readonly rows: number;
  readonly sharedBlksHit: number;
  readonly sharedBlksRead: number;
  readonly tempBlksRead: number;
  readonly tempBlksWritten: number;
  /** Null on the first snapshot, after a reset, or when the previous counters are unknown. */
  readonly interval: StatementInterval | null;
}

export interface StatementsSnapshot {
  /** When the counters were read (the base of the next interval). */
  readonly at: Date;
  readonly extensionVersion: string;
  /** The top statements by total execution time, most expensive first. */
  readonly statements: readonly Statement[];
  /** How many entries pg_stat_statements holds in all. */
  readonly totalCount: number;
  /** pg_stat_statements.max. */
  readonly capacity: number | null;
  /** Seconds since the previous snapshot; null on the first. */
  readonly intervalSeconds: number | null;
  /** The counters were reset since the previous snapshot: rates are unknown for this interval. */
  readonly reset: boolean;
  /** pg_stat_statements_info.stats_reset (1.9+). */
  readonly statsReset: Date | null;
  /** Entries evicted since stats_reset (1.9+). */
  readonly dealloc: number | null;
  /** Entries evicted during the interval; null when unknown. */
  readonly deallocDelta: number | null;
}

const extensionName = 'pg_stat_statements';

function extensionVersionAtLeast(version: string, major: number, minor: number): boolean {
  const [a = 0, b = 0] = version.split('.').map((part) => Number.parseInt(part, 10));
  return a > major || (a === major && b >= minor);
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function notInstalled(server: ServerInfo | undefined): Unsupported {
  const preloaded = server?.preloadLibraries?.includes(extensionName) ?? false;
  return {
    kind: 'extension',
    reason: `${extensionName} is not installed in this database`,
    fix: preloaded
      ? `CREATE EXTENSION ${extensionName}; (it is already in shared_preload_libraries)`
      : `add ${extensionName} to shared_preload_libraries, restart, then CREATE EXTENSION ${extensionName};`,
  };
}

const notLoaded: Unsupported = {
  kind: 'config',
  reason: `${extensionName} is installed but not loaded: it must be in shared_preload_libraries`,
  fix: `add ${extensionName} to shared_preload_libraries and restart the server`,
};

function statementsSql(schema: string, version: string): string {
  const v18 = extensionVersionAtLeast(version, 1, 8);
  const total = v18 ? 's.total_exec_time' : 's.total_time';
  const mean = v18 ? 's.mean_exec_time' : 's.mean_time';
  const toplevel = extensionVersionAtLeast(version, 1, 9) ? 's.toplevel' : 'null::boolean as toplevel';
  return `
select s.queryid::text as query_id, s.userid as user_id, s.dbid as db_id, ${toplevel},
       r.rolname as user_name, d.datname as database,
       left(coalesce(s.query, ''), 1024) as query, s.calls, ${total} as total_exec_ms, ${mean} as mean_exec_ms, s.rows,
       s.shared_blks_hit, s.shared_blks_read, s.temp_blks_read, s.temp_blks_written,
       count(*) over () as total_count
  from ${quoteIdent(schema)}.pg_stat_statements s
  left join pg_catalog.pg_roles r on r.oid = s.userid
  left join pg_catalog.pg_database d on d.oid = s.dbid
 order by ${total} desc
 limit ${statementsLimit}`;
}

function keyOf(key: StatementKey): string {
  return `${key.queryId ?? ''}/${key.userId}/${key.dbId}/${String(key.toplevel)}`;
}

type Counters = Omit<Statement, keyof StatementKey | 'user' | 'database' | 'query' | 'meanExecMs' | 'interval'>;

const zero: Counters = { calls: 0, totalExecMs: 0, rows: 0, sharedBlksHit: 0, sharedBlksRead: 0, tempBlksRead: 0, tempBlksWritten: 0 };

function intervalOf(current: Counters, before: Counters, seconds: number): StatementInterval {
  const calls = current.calls - before.calls;
  const execMs = current.totalExecMs - before.totalExecMs;
  return {
    calls,
    callsPerSecond: calls / seconds,
    execMs,
    execMsPerSecond: execMs / seconds,
    meanExecMs: calls > 0 ? execMs / calls : null,
    rows: current.rows - before.rows,
    sharedBlksHit: current.sharedBlksHit - before.sharedBlksHit,
    sharedBlksRead: current.sharedBlksRead - before.sharedBlksRead,
    tempBlksRead: current.tempBlksRead - before.tempBlksRead,
    tempBlksWritten: current.tempBlksWritten - before.tempBlksWritten,
  };
}

function parseStatement(row: Row): Omit<Statement, 'interval'> {
  return {
    queryId: stringOrNull(row, 'query_id'),
    userId: number(row, 'user_id'),
    dbId: number(row, 'db_id'),
    toplevel: booleanOrNull(row, 'toplevel'),
    user: stringOrNull(row, 'user_name'),
    database: stringOrNull(row, 'database'),
    query: string(row, 'query'),
    calls: number(row, 'calls'),
    totalExecMs: number(row, 'total_exec_ms'),
    meanExecMs: number(row, 'mean_exec_ms'),
    rows: number(row, 'rows'),
    sharedBlksHit: number(row, 'shared_blks_hit'),
    sharedBlksRead: number(row, 'shared_blks_read'),
    tempBlksRead: number(row, 'temp_blks_read'),
    tempBlksWritten: number(row, 'temp_blks_written'),
  };
}

/** The top statements by total time from pg_stat_statements, with per-interval rates and reset detection. */
export const statementsProbe: Probe<StatementsSnapshot> = {
  id: 'statements',
  title: 'Statements',
  target: 'server',
  cadenceMs: 10_000,
  minServerVersion: 100000,
  unsupported(server) {
    const installed = extensionName in server.extensions;
    if (!installed) return notInstalled(server);
    // When the role may not read shared_preload_libraries (null), the query's SQLSTATE 55000 says it instead.
    if (server.preloadLibraries !== null && !server.preloadLibraries.includes(extensionName)) return notLoaded;
    return undefined;
  },
  // The schema and version are read on every run: the extension may live outside the search_path,
  // and its columns follow the installed extension version, not the server version.
  queries: () => ({
    extension: {
      text: `select n.nspname as schema, e.extversion as version,
                    current_setting('pg_stat_statements.max', true) as capacity
               from pg_catalog.pg_extension e join pg_catalog.pg_namespace n on n.oid = e.extnamespace
              where e.extname = $1`,
      values: [extensionName],
    },
  }),
  followUp(rows) {
    const extension = rowsOf(rows, 'extension')[0];
    // Dropped since ServerInfo was cached: let the server raise 42P01, which maps to "not installed".
    if (extension === undefined) return { statements: { text: 'select * from pg_stat_statements limit 0' } };
    const schema = string(extension, 'schema');
    const version = string(extension, 'version');
    const queries: Record<string, Query> = { statements: { text: statementsSql(schema, version) } };
    if (extensionVersionAtLeast(version, 1, 9)) {
      queries['info'] = { text: `select dealloc, stats_reset from ${quoteIdent(schema)}.pg_stat_statements_info` };
    }
    return queries;
  },
  parse(rows, context) {
    const extension = rowsOf(rows, 'extension')[0];
    if (extension === undefined) throw new Error(`${extensionName} is not installed in this database`);
    const statementRows = rowsOf(rows, 'statements');
    const info = rowsOf(rows, 'info')[0];
    const current = statementRows.map(parseStatement);
    const statsReset = info === undefined ? null : dateOrNull(info, 'stats_reset');
    const dealloc = info === undefined ? null : numberOrNull(info, 'dealloc');
    const totalCount = statementRows[0] === undefined ? 0 : number(statementRows[0], 'total_count');

    const previous = context.previous;
    const before = new Map<string, Statement>();
    for (const statement of previous?.statements ?? []) {
      if (statement.queryId !== null) before.set(keyOf(statement), statement);
    }
    const callsFell = current.some((statement) => {
      const old = statement.queryId === null ? undefined : before.get(keyOf(statement));
      return old !== undefined && statement.calls < old.calls;
    });
    const previousReset = previous?.statsReset ?? null;
    const previousDealloc = previous?.dealloc ?? null;
    const statsResetChanged = previousReset !== null && statsReset !== null && previousReset.getTime() !== statsReset.getTime();
    const deallocFell = previousDealloc !== null && dealloc !== null && dealloc < previousDealloc;
    const reset = previous !== undefined && (callsFell || statsResetChanged || deallocFell);
    const seconds = previous === undefined ? null : (context.now.getTime() - previous.at.getTime()) / 1000;
    const rateSeconds = !reset && seconds !== null && seconds > 0 ? seconds : null;
    // When the previous snapshot held every entry, an entry it lacks is new: its counters started at 0.
    const previousComplete = previous !== undefined && previous.totalCount <= previous.statements.length;

    const statements = current.map((statement): Statement => {
      let interval: StatementInterval | null = null;
      if (rateSeconds !== null && statement.queryId !== null) {
        const old = before.get(keyOf(statement)) ?? (previousComplete ? zero : undefined);
        if (old !== undefined) interval = intervalOf(statement, old, rateSeconds);
      }
      return { ...statement, interval };
    });

    return {
      at: context.now,
      extensionVersion: string(extension, 'version'),
      statements,
      totalCount,
      capacity: numberOrNull(extension, 'capacity'),
      intervalSeconds: seconds,
      reset,
      statsReset,
      dealloc,
      deallocDelta: !reset && dealloc !== null && previousDealloc !== null ? dealloc - previousDealloc : null,
    };
  },
  unsupportedFor(sqlstate, server) {
    // 55000: "pg_stat_statements must be loaded via shared_preload_libraries".
    if (sqlstate === '55000') return notLoaded;
    if (sqlstate === '42P01') return notInstalled(server);
    if (sqlstate === '42501') {
      return {
        kind: 'privilege',
        reason: `this role may not read ${extensionName}`,
        fix: `GRANT pg_monitor TO the monitoring role, and restore EXECUTE on ${extensionName}() / SELECT on the view if they were revoked`,
      };
    }
    return undefined;
  },
};
