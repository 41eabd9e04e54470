/**
 * One run of a custom SQL health check: the query runs read-only through src/db (its own session,
 * BEGIN READ ONLY, a local statement_timeout, ROLLBACK), and the first column of the first row
 * must be a number. Every way it can go wrong becomes the result's error, in words.
 */
import type { SqlHealthCheckConfig } from '../config/health.js';
import type { Config, ConnectionSpec } from '../config/types.js';
import { runReadOnlyQuery } from '../db/custom-query.js';
import { DbError } from '../db/errors.js';
import { messageOf } from '../errors.js';
import type { CustomSqlResult } from '../probes/application.js';

/** application_name of these sessions: it starts with "pgwarden", so the probes leave them out. */
export const customSqlApplication = 'pgwarden health';

const numeric = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** The value as a number, or why it is not one (int8 and numeric arrive as strings and are converted). */
export function numericValue(value: unknown, column: string | null, rowCount: number): { readonly value: number } | { readonly error: string } {
  if (column === null) return { error: 'the query returned no column' };
  if (rowCount === 0) return { error: 'the query returned no row (aggregate it, e.g. select count(*) …)' };
  const name = `its first column "${column}"`;
  if (value === null || value === undefined) return { error: `${name} is NULL, not a number (use coalesce(…, 0) if none means 0)` };
  if (typeof value === 'number') return Number.isFinite(value) ? { value } : { error: `${name} is ${value}, not a finite number` };
  if (typeof value === 'string' && numeric.test(value.trim())) {
    const parsed = Number(value);
    return Number.isFinite(parsed) ? { value: parsed } : { error: `${name} is ${value}, too large for a number` };
  }
  if (typeof value === 'boolean') return { error: `${name} is boolean ${value}, not a number (cast it: (…)::int)` };
  const text = typeof value === 'string' ? JSON.stringify(value.length > 40 ? `${value.slice(0, 39)}…` : value) : typeof value;
  return { error: `${name} is ${text}, not a number` };
}

/** Why the query failed, with what to do for the failures a custom check meets. */
function failureOf(error: unknown, check: SqlHealthCheckConfig): string {
  if (error instanceof DbError) {
    if (error.sqlstate === '25006') return `refused by READ ONLY: the query tries to write (${error.message}); custom checks may only read`;
    if (error.sqlstate === '57014') return `cancelled after timeout_ms (${check.timeoutMs} ms): make the query faster or raise timeout_ms`;
    return error.hint === undefined ? error.message : `${error.message} (${error.hint})`;
  }
  return messageOf(error);
}

/** The node (the cluster's first unless named) and database the check runs on, or why there is none. */
export function sqlTargetOf(config: Config, clusterName: string, check: SqlHealthCheckConfig): { readonly connection: ConnectionSpec; readonly label: string } | { readonly error: string } {
  const cluster = config.clusters.find((candidate) => candidate.name === clusterName);
  if (cluster === undefined) return { error: `no cluster named "${clusterName}" in ${config.source}` };
  const node = check.node === undefined ? cluster.nodes[0] : cluster.nodes.find((candidate) => candidate.name === check.node);
  if (node === undefined) {
    return { error: `no node named "${check.node ?? ''}" in cluster "${cluster.name}" (known: ${cluster.nodes.map((candidate) => candidate.name).join(', ')}); fix health.sql node` };
  }
  const connection = check.database === undefined ? node.connection : { ...node.connection, database: check.database };
  return { connection, label: `${node.name}/${connection.database}` };
}

export interface CustomSqlOptions {
  /** A monotonic clock in ms (default performance.now). */
  readonly now?: () => number;
}

/** Runs the check once on its node (the cluster's first unless named) and database. */
export async function runCustomSql(config: Config, clusterName: string, check: SqlHealthCheckConfig, options: CustomSqlOptions = {}): Promise<CustomSqlResult> {
  const now = options.now ?? (() => performance.now());
  const base = { name: check.name, warning: check.warning, critical: check.critical, direction: check.direction };
  const target = sqlTargetOf(config, clusterName, check);
  if ('error' in target) return { ...base, target: `${check.node ?? '?'}/${check.database ?? '?'}`, value: null, error: target.error, durationMs: 0 };
  const started = now();
  try {
    const result = await runReadOnlyQuery(target.connection, check.query, { timeoutMs: check.timeoutMs, application: customSqlApplication });
    const outcome = numericValue(result.value, result.column, result.rowCount);
    const durationMs = now() - started;
    return 'value' in outcome
      ? { ...base, target: target.label, value: outcome.value, error: null, durationMs }
      : { ...base, target: target.label, value: null, error: outcome.error, durationMs };
  } catch (error) {
    return { ...base, target: target.label, value: null, error: failureOf(error, check), durationMs: now() - started };
  }
}
