/**
 * The PgBouncer admin console. It speaks only the simple query protocol and knows few startup
 * parameters, so it gets its own client: no parameters, no statement_timeout, SHOW commands only.
 */
import pg from 'pg';
import type { ConnectionSpec } from '../config/types.js';
import { describeConnection } from '../config/conninfo.js';
import { toDbError } from './errors.js';
import { clientConfig } from './connect.js';
import type { Query, Queryable, Row } from './types.js';

export class PgBouncerAdmin implements Queryable {
  readonly label: string;
  private client: pg.Client | undefined;
  private readonly secrets: readonly string[];

  constructor(readonly spec: ConnectionSpec) {
    this.label = `pgbouncer ${describeConnection(spec)}`;
    this.secrets = spec.password === undefined ? [] : [spec.password];
  }

  private async connected(): Promise<pg.Client> {
    if (this.client !== undefined) return this.client;
    const client = new pg.Client(clientConfig(this.spec));
    client.on('error', () => {
      if (this.client === client) this.client = undefined;
    });
    try {
      await client.connect();
    } catch (error) {
      throw toDbError(this.label, error, this.secrets);
    }
    this.client = client;
    return client;
  }

  /** Runs an admin command (parameters are refused: the console cannot bind them). */
  async query(query: Query, timeoutMs?: number): Promise<readonly Row[]> {
    if (query.values !== undefined && query.values.length > 0) {
      throw new Error('the PgBouncer admin console does not accept query parameters');
    }
    const client = await this.connected();
    try {
      const result = await client.query(timeoutMs === undefined ? query.text : ({ text: query.text, query_timeout: timeoutMs } as pg.QueryConfig));
      return result.rows as Row[];
    } catch (error) {
      const dbError = toDbError(this.label, error, this.secrets);
      if (dbError.sqlstate === undefined) {
        this.client = undefined;
        client.end().catch(() => undefined);
      }
      throw dbError;
    }
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.end();
  }
}
