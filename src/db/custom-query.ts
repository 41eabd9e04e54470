/**
 * Running a user's query (a custom SQL health check) so that it cannot change anything or run for
 * long: on a session of its own, inside BEGIN READ ONLY with a transaction-local statement_timeout,
 * sent with the extended protocol (which refuses several statements), and always rolled back.
 */
import pg from 'pg';
import type { ConnectionSpec } from '../config/types.js';
import { describeConnection } from '../config/conninfo.js';
import { applicationName, clientConfig } from './connect.js';
import { toDbError } from './errors.js';

/** The first cell of the result, as the driver gave it (int8 and numeric arrive as strings). */
export interface ReadOnlyQueryResult {
  /** The name of the first column, or null when the query returned no column. */
  readonly column: string | null;
  /** The first column of the first row; undefined when there is no row or no column. */
  readonly value: unknown;
  readonly rowCount: number;
}

export interface ReadOnlyQueryOptions {
  /** The statement_timeout of the query, in ms; the client gives up one second later. */
  readonly timeoutMs: number;
  /** application_name of the session (default pgwarden's own, which the probes leave out). */
  readonly application?: string;
}

/**
 * Runs one statement read-only and returns its first cell. Throws a DbError: a refused connection,
 * a write refused by READ ONLY (SQLSTATE 25006), a timeout (57014), a syntax error…
 */
export async function runReadOnlyQuery(spec: ConnectionSpec, text: string, options: ReadOnlyQueryOptions): Promise<ReadOnlyQueryResult> {
  const label = describeConnection(spec);
  const secrets = spec.password === undefined ? [] : [spec.password];
  const client = new pg.Client(clientConfig(spec, options.application ?? applicationName));
  // A backend terminated under us emits 'error'; the query in flight reports it instead.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('begin read only');
    await client.query("select set_config('statement_timeout', $1, true)", [String(options.timeoutMs)]);
    // queryMode is not in @types/pg; 'extended' makes the server refuse a second statement.
    const query = { text, rowMode: 'array', queryMode: 'extended', query_timeout: options.timeoutMs + 1000 } as pg.QueryArrayConfig;
    const result = await client.query(query);
    await client.query('rollback');
    const first = result.rows[0];
    return { column: result.fields[0]?.name ?? null, value: first === undefined ? undefined : first[0], rowCount: result.rows.length };
  } catch (error) {
    throw toDbError(label, error, secrets);
  } finally {
    // Ending the session also ends a transaction left open by a failure.
    await client.end().catch(() => undefined);
  }
}
