/**
 * The application health snapshot: what src/health measured of the configured HTTP endpoints and
 * custom SQL checks, for the http-endpoint and custom-sql checks. It is not a probe (it is not in
 * the probes array and no runner schedules it): the watcher and `pgwarden alerts check` fill it
 * in under the 'application' id from src/health/application.ts.
 */

/** One request to an HTTP endpoint. */
export interface EndpointResult {
  readonly name: string;
  /** The URL with any password in it replaced by "***". */
  readonly url: string;
  /** True when it answered with an expected status within its timeout. */
  readonly ok: boolean;
  /** The HTTP status, or null when there was no answer. */
  readonly status: number | null;
  /** Time to the response headers, or null when there was no answer. */
  readonly latencyMs: number | null;
  /** Why it failed (refused, timed out, an unexpected status…); null when ok. */
  readonly error: string | null;
}

/** An endpoint's result with the latency thresholds of its configuration. */
export interface EndpointStatus extends EndpointResult {
  /** Its own warning_latency_ms; null: the check's warningLatencyMs applies. */
  readonly warningLatencyMs: number | null;
  /** Its own critical_latency_ms; null: latency alone is never critical. */
  readonly criticalLatencyMs: number | null;
}

/** above: higher values are worse; below: lower values are worse. */
export type ThresholdDirection = 'above' | 'below';

/** One run of a custom SQL check. */
export interface CustomSqlResult {
  readonly name: string;
  /** Where it ran: "db1/orders" (node/database). */
  readonly target: string;
  /** The first column of the first row, as a number; null when there is none (see error). */
  readonly value: number | null;
  /** Why there is no value: the query failed, timed out, wrote, returned no row or not a number. */
  readonly error: string | null;
  readonly warning: number;
  readonly critical: number;
  readonly direction: ThresholdDirection;
  readonly durationMs: number;
}

export interface ApplicationSnapshot {
  readonly endpoints: readonly EndpointStatus[];
  readonly queries: readonly CustomSqlResult[];
}
