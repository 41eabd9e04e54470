/**
 * The probe contract. A probe is data plus pure functions: which SQL to run for a server version,
 * and how to turn the rows into a typed, readonly snapshot. The runner does all the I/O.
 */
import type { Query, Row, ServerInfo } from '../db/types.js';

export type ProbeId =
  | 'server'
  | 'activity'
  | 'connections'
  | 'locks'
  | 'databases'
  | 'tables'
  | 'replication'
  | 'statements'
  | 'pgbouncer'
  | 'storage'
  | 'sequences'
  | 'timeouts'
  | 'pgbouncer-config'
  /** Not a probe: the application health snapshot that src/health fills in (src/probes/application.ts). */
  | 'application';

/** Rows of each named query a probe ran. */
export type RowSets = Readonly<Record<string, readonly Row[]>>;

/**
 * Snapshots of other probes taken in the same refresh, for probes that derive their figures from
 * them instead of scanning the same view again (connections and locks read activity).
 */
export type ProbeInputs = Readonly<Partial<Record<ProbeId, unknown>>>;

/** Why a probe cannot run here, and what would make it run. */
export interface Unsupported {
  readonly kind: 'version' | 'extension' | 'privilege' | 'config';
  readonly reason: string;
  readonly fix: string;
}

export interface ParseContext<S> {
  readonly server: ServerInfo | undefined;
  /** When the rows were fetched. */
  readonly now: Date;
  /** The previous good snapshot of this probe, for rates and deltas. */
  readonly previous: S | undefined;
  /** When the previous snapshot was taken (the interval for rates is now − previousAt). */
  readonly previousAt?: Date | undefined;
  /** Fresh snapshots of the probes named in Probe.inputs; a missing one means "query it yourself". */
  readonly inputs?: ProbeInputs;
  /** Why the follow-up queries failed, when they did: the first rows are still parsed. */
  readonly followUpError?: string | undefined;
}

export interface Probe<S> {
  readonly id: ProbeId;
  readonly title: string;
  /** 'server' probes run against a PostgreSQL node; 'pgbouncer' against its admin console. */
  readonly target: 'server' | 'pgbouncer';
  /** The default interval between runs; cheap probes run every refresh. */
  readonly cadenceMs: number;
  /** The oldest server_version_num supported. */
  readonly minServerVersion: number;
  /** Why it cannot run on this server (missing extension, privilege…), or undefined when it can. */
  unsupported?(server: ServerInfo): Unsupported | undefined;
  /**
   * The named queries to run, in order, selected for this server. `previous` (the last good
   * snapshot) lets a probe skip an expensive query whose result is still fresh.
   */
  queries(server: ServerInfo | undefined, previous?: Stamped<S>, inputs?: ProbeInputs): Readonly<Record<string, Query>>;
  /**
   * Probes whose snapshot from the same refresh this one can use instead of querying (it must
   * still work without them: they may be disabled, failing, or not due).
   */
  readonly inputs?: readonly ProbeId[];
  /**
   * True when the follow-up only adds detail, so its failure must not fail the probe (the first
   * rows are parsed, with context.followUpError saying why the rest is missing).
   */
  readonly followUpOptional?: boolean;
  /** Further queries that depend on the first rows (e.g. confirming bloat with pgstattuple). */
  followUp?(rows: RowSets, server: ServerInfo | undefined, previous?: Stamped<S>): Readonly<Record<string, Query>>;
  /**
   * Host I/O after the queries, for facts SQL cannot give (free disk with statfs when the data
   * directory is on this host). Its row sets join the rows parse() receives; an expected failure
   * is reported in those rows, not thrown.
   */
  local?(rows: RowSets): Promise<RowSets>;
  /** Pure: rows to snapshot. NULL stays null; int8 and numeric are converted deliberately. */
  parse(rows: RowSets, context: ParseContext<S>): S;
  /** An SQLSTATE that means "unsupported" rather than "failed" for this probe (e.g. a missing view). */
  unsupportedFor?(sqlstate: string, server: ServerInfo | undefined): Unsupported | undefined;
}

/** A snapshot with the time it describes. */
export interface Stamped<S> {
  readonly snapshot: S;
  readonly at: Date;
}

export interface ProbeError {
  readonly message: string;
  readonly hint: string | undefined;
  readonly sqlstate: string | undefined;
}

/** What a view or check sees of one probe: always one of these four. */
export type ProbeResult<S> =
  | { readonly status: 'pending' }
  | ({ readonly status: 'ok'; readonly durationMs: number } & Stamped<S>)
  | { readonly status: 'unsupported'; readonly unsupported: Unsupported }
  | { readonly status: 'error'; readonly error: ProbeError; readonly since: Date; readonly last: Stamped<S> | undefined };

/** The freshest snapshot a result holds, and whether it is stale (from before an error). */
export function latest<S>(result: ProbeResult<S>): { snapshot: S; at: Date; stale: boolean } | undefined {
  if (result.status === 'ok') return { snapshot: result.snapshot, at: result.at, stale: false };
  if (result.status === 'error' && result.last !== undefined) return { ...result.last, stale: true };
  return undefined;
}
