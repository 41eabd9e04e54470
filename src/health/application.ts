/**
 * The application health evaluation of one cluster (DESIGN §5 "application health"): requests the
 * cluster's HTTP endpoints and runs its custom SQL checks (concurrently), puts the results in an
 * 'application' snapshot and evaluates the http-endpoint and custom-sql checks on it. The result
 * is an Evaluation for the alert engine under the node "app". The consecutive-failure counts live
 * in the returned state: pass it back as `previous` next time (and persist it with the checks'
 * states), so a failure is a warning once and critical the second time in a row.
 */
import type { Evaluation } from '../alerts/types.js';
import { applicationCheckIds, customSqlCheck, httpEndpointCheck } from '../checks/application.js';
import { resolveThresholds } from '../checks/catalogue.js';
import { recordOf, unknownFinding } from '../checks/helpers.js';
import type { Check, Finding } from '../checks/types.js';
import { thresholdOverridesFor } from '../config/alerting.js';
import type { HttpEndpointConfig, SqlHealthCheckConfig } from '../config/health.js';
import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import type { ApplicationSnapshot, CustomSqlResult, EndpointStatus } from '../probes/application.js';
import type { Results } from '../probes/runner.js';
import type { ProbeId, ProbeResult } from '../probes/types.js';
import { runCustomSql } from './custom-sql.js';
import { probeEndpoint, type FetchLike } from './http.js';

/** The node name of application findings and alerts (they belong to the cluster, not to a server). */
export const applicationNode = 'app';

/** What evaluateApplication() carries from one call to the next: check id → that check's state. JSON-safe. */
export interface ApplicationState {
  readonly checks: Readonly<Record<string, unknown>>;
}

export interface ApplicationDeps {
  /**
   * The ApplicationState the previous call returned; undefined at the first call (and in a one-shot
   * run). Typed unknown so that a state read back from disk can be passed as it is: anything that
   * is not an ApplicationState counts as no previous state.
   */
  readonly previous?: unknown;
  /** Only these check ids ('http-endpoint', 'custom-sql'); default both. */
  readonly checks?: readonly string[] | undefined;
  /** fetch for the HTTP endpoints (default the global one). */
  readonly fetch?: FetchLike;
  /** A monotonic clock in ms for latencies and durations (default performance.now). */
  readonly clock?: () => number;
}

export interface ApplicationOutcome {
  /** For stepEngine(): cluster, node "app", the checks that ran, their findings. */
  readonly evaluation: Evaluation;
  /** The same findings with their full type (warning thresholds included), for `alerts check`. */
  readonly findings: readonly Finding[];
  /** To pass as deps.previous next time. */
  readonly state: ApplicationState;
  /** The results the checks read: only the 'application' snapshot. */
  readonly results: Results;
}

/** The endpoints and SQL checks that belong to this cluster (those that name none belong to the first cluster). */
export function healthChecksOf(config: Config, clusterName: string): { readonly http: readonly HttpEndpointConfig[]; readonly sql: readonly SqlHealthCheckConfig[] } {
  const first = config.clusters[0]?.name;
  const mine = (entry: { readonly cluster: string | undefined }): boolean => (entry.cluster ?? first) === clusterName;
  return { http: config.health.http.filter(mine), sql: config.health.sql.filter(mine) };
}

const applicationChecks: readonly Check[] = [httpEndpointCheck, customSqlCheck] as readonly Check[];

/** Measures the cluster's application health once and evaluates it against the previous state. */
export async function evaluateApplication(config: Config, clusterName: string, now: Date, deps: ApplicationDeps = {}): Promise<ApplicationOutcome> {
  const wanted = deps.checks ?? [...applicationCheckIds];
  const selected = applicationChecks.filter((check) => wanted.includes(check.id));
  const runs = (id: string): boolean => selected.some((check) => check.id === id);
  const clock = deps.clock ?? (() => performance.now());
  const { http, sql } = healthChecksOf(config, clusterName);
  const started = clock();
  const [endpoints, queries] = await Promise.all([
    runs('http-endpoint')
      ? Promise.all(http.map(async (endpoint): Promise<EndpointStatus> => ({
        ...(await probeEndpoint(endpoint, { now: clock, ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }) })),
        warningLatencyMs: endpoint.warningLatencyMs ?? null,
        criticalLatencyMs: endpoint.criticalLatencyMs ?? null,
      })))
      : Promise.resolve([]),
    runs('custom-sql') ? Promise.all(sql.map((check) => runCustomSql(config, clusterName, check, { now: clock }))) : Promise.resolve<CustomSqlResult[]>([]),
  ]);
  const snapshot: ApplicationSnapshot = { endpoints, queries };
  const result: ProbeResult<ApplicationSnapshot> = { status: 'ok', durationMs: clock() - started, snapshot, at: now };
  const results: Results = new Map<ProbeId, ProbeResult<unknown>>([['application', result]]);
  const findings: Finding[] = [];
  const before = recordOf(recordOf(deps.previous)?.['checks']) ?? {};
  const next: Record<string, unknown> = { ...before };
  for (const check of selected) {
    const previous = before[check.id];
    try {
      const thresholds = resolveThresholds(check, thresholdOverridesFor(config.alerting, clusterName, check.id));
      findings.push(...check.evaluate({ results, thresholds, now, previous }));
      next[check.id] = check.nextState?.({ results, thresholds, now, previous });
    } catch (error) {
      // A check that throws is a bug; the other check must still be evaluated.
      findings.push(unknownFinding(check.id, messageOf(error)));
    }
  }
  return {
    evaluation: { cluster: clusterName, node: applicationNode, checks: selected.map((check) => check.id), findings },
    findings,
    state: { checks: next },
    results,
  };
}
