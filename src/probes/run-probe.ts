/** Runs one probe once against its target and turns every outcome into a ProbeResult. */
import { DbError } from '../db/errors.js';
import type { Queryable, Query, Row, ServerInfo } from '../db/types.js';
import { messageOf } from '../errors.js';
import type { Probe, ProbeInputs, ProbeResult, Stamped, Unsupported } from './types.js';

/** What a probe runs against: a PostgreSQL node (with its server facts) or a PgBouncer console. */
export interface ProbeTargets {
  readonly server: Queryable & { serverInfo(): Promise<ServerInfo> };
  readonly pgbouncer: Queryable | undefined;
}

async function runQueries(target: Queryable, queries: Readonly<Record<string, Query>>, timeoutMs: number): Promise<Record<string, readonly Row[]>> {
  const rows: Record<string, readonly Row[]> = {};
  for (const [name, query] of Object.entries(queries)) {
    rows[name] = await target.query(query, timeoutMs);
  }
  return rows;
}

function versionText(num: number): string {
  return num >= 100000 ? String(Math.floor(num / 10000)) : `${Math.floor(num / 10000)}.${Math.floor(num / 100) % 100}`;
}

/** Runs the probe and never throws: failures become error results that keep the last good snapshot. */
export async function runProbe<S>(
  probe: Probe<S>,
  targets: ProbeTargets,
  options: { readonly timeoutMs: number; readonly previous: Stamped<S> | undefined; readonly now?: () => Date; readonly inputs?: ProbeInputs },
): Promise<ProbeResult<S>> {
  const now = options.now ?? (() => new Date());
  const started = performance.now();
  let server: ServerInfo | undefined;
  try {
    let target: Queryable;
    if (probe.target === 'pgbouncer') {
      if (targets.pgbouncer === undefined) {
        return {
          status: 'unsupported',
          unsupported: { kind: 'config', reason: 'no PgBouncer is configured for this cluster', fix: 'set clusters[].pgbouncer.dsn in the config file (the admin console, database "pgbouncer")' },
        };
      }
      target = targets.pgbouncer;
    } else {
      server = await targets.server.serverInfo();
      const unsupported = unsupportedOn(probe, server);
      if (unsupported !== undefined) return { status: 'unsupported', unsupported };
      target = targets.server;
    }
    const rows = await runQueries(target, probe.queries(server, options.previous, options.inputs), options.timeoutMs);
    // A failed follow-up (say, pgstatindex on a huge index timing out) must not discard the
    // first rows: parse them and say why the rest is missing.
    let followUpError: string | undefined;
    const followUp = probe.followUp?.(rows, server, options.previous);
    if (followUp !== undefined) {
      try {
        Object.assign(rows, await runQueries(target, followUp, options.timeoutMs));
      } catch (error) {
        if (probe.followUpOptional !== true) throw error;
        followUpError = messageOf(error);
      }
    }
    // Host facts SQL cannot give (statfs of a local data directory) join the rows.
    if (probe.local !== undefined) Object.assign(rows, await probe.local(rows));
    const at = now();
    const snapshot = probe.parse(rows, { server, now: at, previous: options.previous?.snapshot, previousAt: options.previous?.at, followUpError, inputs: options.inputs ?? {} });
    return { status: 'ok', snapshot, at, durationMs: performance.now() - started };
  } catch (error) {
    if (error instanceof DbError && error.sqlstate !== undefined) {
      const unsupported = probe.unsupportedFor?.(error.sqlstate, server);
      if (unsupported !== undefined) return { status: 'unsupported', unsupported };
    }
    return {
      status: 'error',
      error: {
        message: messageOf(error),
        hint: error instanceof DbError
          ? error.sqlstate === '42501' && server !== undefined
            ? `GRANT pg_monitor TO ${server.currentUser}; (pgwarden needs only pg_monitor to watch)`
            : error.hint
          : undefined,
        sqlstate: error instanceof DbError ? error.sqlstate : undefined,
      },
      since: now(),
      last: options.previous,
    };
  }
}

function unsupportedOn<S>(probe: Probe<S>, server: ServerInfo): Unsupported | undefined {
  if (server.versionNum < probe.minServerVersion) {
    return {
      kind: 'version',
      reason: `${probe.title} needs PostgreSQL ${versionText(probe.minServerVersion)} or later; this server runs ${server.version}`,
      fix: 'upgrade the server',
    };
  }
  return probe.unsupported?.(server);
}
