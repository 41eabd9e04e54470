/**
 * A connection pool to one PostgreSQL node. Every session carries application_name=pgwarden and
 * a statement and lock timeout, so a probe can never hang the server or queue behind a lock. After
 * a connection failure, new attempts back off (1 s doubling to 30 s) instead of hammering a server
 * that is down; the first success resets it.
 */
import pg from 'pg';
import type { ConnectionSpec } from '../config/types.js';
import { describeConnection } from '../config/conninfo.js';
import { DbError, toDbError } from './errors.js';
import { applicationName, clientConfig } from './connect.js';
import type { Query, Queryable, Row, ServerInfo } from './types.js';

export interface PgNodeOptions {
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly poolSize?: number;
  readonly application?: string;
}

const serverInfoSql = `
select current_setting('server_version_num')::int as version_num,
       current_setting('server_version') as version,
       pg_is_in_recovery() as in_recovery,
       current_user as current_user,
       current_database() as database,
       r.rolsuper as superuser,
       r.rolsuper or pg_has_role(current_user, 'pg_monitor', 'member') as monitor,
       coalesce((select json_object_agg(extname, extversion) from pg_extension), '{}') as extensions,
       (select setting from pg_settings where name = 'shared_preload_libraries') as preload
  from pg_roles r where r.rolname = current_user`;

const maxBackoffMs = 30_000;
const serverInfoTtlMs = 60_000;

export type NodeState = 'unknown' | 'up' | 'down';

export class PgNode implements Queryable {
  readonly label: string;
  private readonly pool: pg.Pool;
  private readonly secrets: readonly string[];
  private info: Promise<ServerInfo> | undefined;
  private infoAt = 0;
  private failures = 0;
  private retryAt = 0;
  private lastError: DbError | undefined;
  private currentState: NodeState = 'unknown';
  private readonly statementTimeoutMs: number;

  constructor(readonly spec: ConnectionSpec, options: PgNodeOptions) {
    this.label = describeConnection(spec);
    this.secrets = spec.password === undefined ? [] : [spec.password];
    this.statementTimeoutMs = options.statementTimeoutMs;
    this.pool = new pg.Pool({
      ...clientConfig(spec, options.application ?? applicationName),
      max: options.poolSize ?? 3,
      idleTimeoutMillis: 60_000,
      statement_timeout: options.statementTimeoutMs,
      lock_timeout: options.lockTimeoutMs,
      idle_in_transaction_session_timeout: 60_000,
      // JIT compiles catalog queries for longer than they run (tables: 2.7 s with it, 0.5 s without on 50k tables).
      options: '-c jit=off',
    });
    // An idle client dropped by the server emits here; without a listener it would crash the process.
    this.pool.on('error', (error) => {
      this.markDown(toDbError(this.label, error, this.secrets));
    });
    // The pool listens to a client's errors only while it is idle in the pool. The server can end
    // a connection while it is checked out with no query in flight, or just after a failed query
    // released it for removal (a fast shutdown): the client then emits 'error' with nobody to hear
    // it, which would crash the console. Nothing to do here: the query in flight, if any, fails on
    // its own, the pool drops the client, and the next query reports the server's state (marking
    // the node down here as well would count one outage several times and lengthen the back-off).
    this.pool.on('connect', (client) => {
      client.on('error', () => undefined);
    });
  }

  /** up after a successful query, down after a failed connection, unknown before the first. */
  get state(): NodeState {
    return this.currentState;
  }

  /** The most recent connection failure, if the node is down. */
  get error(): DbError | undefined {
    return this.lastError;
  }

  private markDown(error: DbError): void {
    this.info = undefined;
    this.failures += 1;
    this.currentState = 'down';
    this.lastError = error;
    this.retryAt = Date.now() + Math.min(maxBackoffMs, 1000 * 2 ** (this.failures - 1));
  }

  /** Runs one query; with timeoutMs the client gives up too (the server's statement_timeout still applies). */
  async query(query: Query, timeoutMs?: number): Promise<readonly Row[]> {
    if (this.currentState === 'down' && this.lastError !== undefined && Date.now() < this.retryAt) {
      throw this.lastError;
    }
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      const dbError = toDbError(this.label, error, this.secrets);
      this.markDown(dbError);
      throw dbError;
    }
    let broken: Error | undefined;
    // A probe with its own timeout sets statement_timeout for this query only, so the server
    // cancels it too (a client-side timeout alone would leave it running).
    const custom = timeoutMs !== undefined && timeoutMs !== this.statementTimeoutMs;
    try {
      const config: pg.QueryConfig = { text: query.text, values: query.values === undefined ? [] : [...query.values] };
      if (custom) await client.query("select set_config('statement_timeout', $1, false)", [String(timeoutMs)]);
      const result = await (timeoutMs === undefined
        ? client.query(config)
        : client.query({ ...config, query_timeout: timeoutMs + 1000 } as pg.QueryConfig));
      if (custom) await client.query("select set_config('statement_timeout', $1, false)", [String(this.statementTimeoutMs)]);
      this.failures = 0;
      this.currentState = 'up';
      this.lastError = undefined;
      return result.rows as Row[];
    } catch (error) {
      const dbError = toDbError(this.label, error, this.secrets);
      // Its statement_timeout may not have been restored: never hand it back to the pool.
      if (custom) broken = dbError;
      // A connection-level failure poisons the client: drop it rather than return it to the pool.
      if (dbError.sqlstate === undefined || dbError.sqlstate.startsWith('08') || dbError.sqlstate.startsWith('57P')) {
        broken = dbError;
        if (dbError.sqlstate !== undefined || !/timeout/i.test(dbError.message)) this.markDown(dbError);
      }
      throw dbError;
    } finally {
      client.release(broken);
    }
  }

  /** Version, role, privileges and extensions; cached until the connection is lost. */
  serverInfo(): Promise<ServerInfo> {
    // Extensions get installed and servers promoted: look again every minute.
    if (Date.now() - this.infoAt > serverInfoTtlMs) this.info = undefined;
    // Probes start together: share one lookup rather than run it once per probe.
    if (this.info === undefined) this.infoAt = Date.now();
    this.info ??= this.fetchServerInfo().catch((error: unknown) => {
      this.info = undefined;
      throw error;
    });
    return this.info;
  }

  private async fetchServerInfo(): Promise<ServerInfo> {
    const [row] = await this.query({ text: serverInfoSql });
    if (row === undefined) throw new DbError(this.label, `${this.label}: the current role is not in pg_roles`, undefined, undefined, undefined);
    const preload = row['preload'];
    return {
      versionNum: Number(row['version_num']),
      version: String(row['version']),
      inRecovery: row['in_recovery'] === true,
      currentUser: String(row['current_user']),
      database: String(row['database']),
      superuser: row['superuser'] === true,
      monitor: row['monitor'] === true,
      extensions: (row['extensions'] ?? {}) as Record<string, string>,
      preloadLibraries: typeof preload === 'string' ? preload.split(',').map((lib) => lib.trim()).filter((lib) => lib !== '') : null,
    };
  }

  /** Forgets cached server facts (after a role change or extension install). */
  invalidate(): void {
    this.info = undefined;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
