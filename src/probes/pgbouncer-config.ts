/**
 * PgBouncer's settings that matter next to the server's (SHOW CONFIG on the admin console): the
 * timeouts that cut clients or server connections, and the pool sizes. A timeout of 0 is disabled;
 * a setting this PgBouncer version does not have is null.
 */
import type { Probe } from './types.js';
import { rowsOf, stringOrNull } from './values.js';

export interface PgBouncerConfigSnapshot {
  /** session, transaction or statement. */
  readonly poolMode: string | null;
  /** Cancels a query running longer than this on the server (seconds, 0 = never). */
  readonly queryTimeoutSeconds: number | null;
  /** Drops a client waiting longer than this for a server connection (seconds, 0 = never). */
  readonly queryWaitTimeoutSeconds: number | null;
  /** Drops a client idle inside a transaction longer than this (seconds, 0 = never). */
  readonly idleTransactionTimeoutSeconds: number | null;
  /** Closes a server connection idle longer than this (seconds, 0 = never). */
  readonly serverIdleTimeoutSeconds: number | null;
  /** Closes a server connection older than this once it is free (seconds, 0 = never). */
  readonly serverLifetimeSeconds: number | null;
  /** Drops a client connection idle longer than this (seconds, 0 = never). */
  readonly clientIdleTimeoutSeconds: number | null;
  readonly maxClientConn: number | null;
  readonly defaultPoolSize: number | null;
  readonly reservePoolSize: number | null;
  readonly maxDbConnections: number | null;
}

const unitSeconds: Readonly<Record<string, number>> = { us: 1e-6, ms: 0.001, s: 1, min: 60, h: 3600, d: 86_400 };

/** Seconds of a SHOW CONFIG time value: PgBouncer prints seconds ("0", "120", "0.5"); a unit suffix is accepted too. */
export function parseBouncerSeconds(text: string | null): number | null {
  if (text === null) return null;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$/.exec(text);
  if (match === null) return null;
  return Number(match[1]) * (unitSeconds[match[2] ?? 's'] ?? 1);
}

function integer(text: string | null): number | null {
  if (text === null || !/^\s*\d+\s*$/.test(text)) return null;
  return Number(text);
}

/** The PgBouncer settings probe: SHOW CONFIG, read by key. */
export const pgbouncerConfigProbe: Probe<PgBouncerConfigSnapshot> = {
  id: 'pgbouncer-config',
  title: 'PgBouncer settings',
  target: 'pgbouncer',
  // Settings change only on RELOAD or SET: every 5 minutes is plenty.
  cadenceMs: 300_000,
  // Runs against PgBouncer, not PostgreSQL: no server version applies.
  minServerVersion: 0,
  queries: () => ({ config: { text: 'SHOW CONFIG' } }),
  parse(rows) {
    const values = new Map<string, string | null>();
    for (const row of rowsOf(rows, 'config')) {
      const key = stringOrNull(row, 'key');
      if (key !== null) values.set(key, stringOrNull(row, 'value'));
    }
    const text = (key: string): string | null => values.get(key) ?? null;
    const seconds = (key: string): number | null => parseBouncerSeconds(text(key));
    return {
      poolMode: text('pool_mode'),
      queryTimeoutSeconds: seconds('query_timeout'),
      queryWaitTimeoutSeconds: seconds('query_wait_timeout'),
      idleTransactionTimeoutSeconds: seconds('idle_transaction_timeout'),
      serverIdleTimeoutSeconds: seconds('server_idle_timeout'),
      serverLifetimeSeconds: seconds('server_lifetime'),
      clientIdleTimeoutSeconds: seconds('client_idle_timeout'),
      maxClientConn: integer(text('max_client_conn')),
      defaultPoolSize: integer(text('default_pool_size')),
      reservePoolSize: integer(text('reserve_pool_size')),
      maxDbConnections: integer(text('max_db_connections')),
    };
  },
};
