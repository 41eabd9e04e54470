/**
 * One dedicated connection, for work that must stay on a single backend: actions (VACUUM cannot
 * run in a pooled transaction), and the demo's workload sessions that hold locks on purpose.
 */
import pg from 'pg';
import type { ConnectionSpec } from '../config/types.js';
import { describeConnection } from '../config/conninfo.js';
import { toDbError } from './errors.js';
import { applicationName, clientConfig } from './connect.js';
import type { Query, Queryable, Row } from './types.js';

export class DbSession implements Queryable {
  readonly label: string;
  private closed = false;

  private constructor(private readonly client: pg.Client, spec: ConnectionSpec, readonly pid: number) {
    this.label = describeConnection(spec);
  }

  /** Connects one session; `application` defaults to pgwarden's own name. */
  static async open(spec: ConnectionSpec, application: string = applicationName): Promise<DbSession> {
    const label = describeConnection(spec);
    const secrets = spec.password === undefined ? [] : [spec.password];
    const client = new pg.Client(clientConfig(spec, application));
    // A backend terminated under us emits 'error'; the next query reports it instead of crashing.
    client.on('error', () => undefined);
    try {
      await client.connect();
      const result = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
      return new DbSession(client, spec, result.rows[0]?.pid ?? 0);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw toDbError(label, error, secrets);
    }
  }

  async query(query: Query, timeoutMs?: number): Promise<readonly Row[]> {
    try {
      const config: pg.QueryConfig = { text: query.text, values: query.values === undefined ? [] : [...query.values] };
      const result = await this.client.query(timeoutMs === undefined ? config : ({ ...config, query_timeout: timeoutMs } as pg.QueryConfig));
      return result.rows as Row[];
    } catch (error) {
      throw toDbError(this.label, error);
    }
  }

  /** Runs several statements in one simple-protocol round trip (no parameters). */
  async script(text: string): Promise<void> {
    try {
      await this.client.query(text);
    } catch (error) {
      throw toDbError(this.label, error);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.end().catch(() => undefined);
  }
}
