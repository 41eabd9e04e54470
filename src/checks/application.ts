/**
 * Application health checks (DESIGN §5): the configured HTTP endpoints and custom SQL checks.
 * A failure (no answer, a timeout, an unexpected status, a query error) is a warning the first
 * time and critical when it repeats: the consecutive failures are counted in the check's state
 * (nextState), once per snapshot, so evaluating the same snapshot twice does not count it twice.
 * They read the 'application' snapshot that src/health fills in; no probe produces it.
 */
import { formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { CustomSqlResult, EndpointStatus } from '../probes/application.js';
import type { Results } from '../probes/runner.js';
import { finding, numberIn, recordOf, snapshotOf, thresholdFor } from './helpers.js';
import type { Check, CheckInput, Finding, Severity } from './types.js';

/** The ids of the checks that read the application snapshot (the watcher evaluates them per cluster, not per node). */
export const applicationCheckIds: ReadonlySet<string> = new Set(['http-endpoint', 'custom-sql']);

const ms = (value: number): string => formatDuration(value / 1000);

/** Consecutive failures of one subject, and the snapshot (epoch ms) that was last counted. */
interface FailureCount {
  readonly failures: number;
  readonly at: number;
}

/** The state both checks keep: subject name → failure count. Plain JSON, so the watcher can persist it. */
export type FailureState = Readonly<Record<string, FailureCount>>;

function previousCounts(previous: unknown): Map<string, FailureCount> {
  const counts = new Map<string, FailureCount>();
  for (const [name, value] of Object.entries(recordOf(previous) ?? {})) {
    const entry = recordOf(value);
    const failures = numberIn(entry?.['failures']);
    const at = numberIn(entry?.['at']);
    if (failures !== undefined && at !== undefined) counts.set(name, { failures, at });
  }
  return counts;
}

/** When the application snapshot was taken (epoch ms), or undefined without one. */
function snapshotAt(results: Results): number | undefined {
  const result = resultOf(results, 'application');
  return result.status === 'ok' ? result.at.getTime() : undefined;
}

/**
 * The failure count of each subject after this snapshot: 0 when it passed, one more than before
 * when it failed, unchanged when this snapshot was already counted. Subjects that are gone are dropped.
 */
function countFailures(subjects: readonly { readonly name: string; readonly failed: boolean }[], at: number, previous: unknown): Record<string, FailureCount> {
  const before = previousCounts(previous);
  const counts: Record<string, FailureCount> = {};
  for (const { name, failed } of subjects) {
    const last = before.get(name);
    if (!failed) counts[name] = { failures: 0, at };
    else if (last !== undefined && last.at === at) counts[name] = last;
    else counts[name] = { failures: (last?.failures ?? 0) + 1, at };
  }
  return counts;
}

function timesInARow(failures: number): string {
  return failures === 1 ? 'once' : `${failures} times in a row`;
}

/** The severity of a failure: a warning until it has failed criticalFailures times in a row. */
function failureSeverity(failures: number, criticalFailures: number): Severity {
  return failures >= criticalFailures ? 'critical' : 'warning';
}

function failureNote(severity: Severity, criticalFailures: number): string {
  return severity === 'critical' ? `(critical: ${criticalFailures} failures in a row)` : `(critical after ${criticalFailures} in a row)`;
}

type EndpointThresholds = { readonly warningLatencyMs: number; readonly criticalFailures: number };

function endpointFinding(endpoint: EndpointStatus, failures: number, t: EndpointThresholds): Finding {
  const id = 'http-endpoint';
  const subject = `endpoint ${endpoint.name}`;
  const warning = endpoint.warningLatencyMs ?? t.warningLatencyMs;
  const critical = endpoint.criticalLatencyMs;
  const details = { url: endpoint.url, status: endpoint.status, latencyMs: endpoint.latencyMs, failures, error: endpoint.error };
  if (!endpoint.ok) {
    const severity = failureSeverity(failures, t.criticalFailures);
    return finding(id, {
      severity, subject, value: endpoint.latencyMs, threshold: null, warningThreshold: warning, unit: 'ms',
      message: `${endpoint.url} failed ${timesInARow(failures)}: ${endpoint.error ?? 'no answer'} ${failureNote(severity, t.criticalFailures)}`,
      context: { details },
    });
  }
  const latency = endpoint.latencyMs ?? 0;
  const severity: Severity = critical !== null && latency >= critical ? 'critical' : latency >= warning ? 'warning' : 'ok';
  const limit = severity === 'critical' && critical !== null ? `(critical ≥ ${ms(critical)})` : `(warning ≥ ${ms(warning)})`;
  return finding(id, {
    severity, subject, value: latency, threshold: severity === 'critical' ? critical : warning, warningThreshold: warning, unit: 'ms',
    message: `${endpoint.url} answered HTTP ${endpoint.status ?? '?'} in ${ms(latency)} ${limit}`,
    context: { details },
  });
}

/** An HTTP endpoint of the application: it answers, with an expected status, in time. */
export const httpEndpointCheck: Check<EndpointThresholds> = {
  id: 'http-endpoint',
  title: 'HTTP endpoint',
  description: 'Requests each endpoint under health.http (a health or readiness URL of the application) and checks the status and the time to the response headers. A failure — no answer, a timeout, an unexpected status — is a warning once and critical when it repeats. Each endpoint can set its own warning_latency_ms and critical_latency_ms; without them the warningLatencyMs threshold applies and latency alone is never critical.',
  cadence: 'fast',
  probes: ['application'],
  defaults: { warningLatencyMs: 1000, criticalFailures: 2 },
  levels: (t) => ({
    warning: `an endpoint fails once (no answer, timeout or an unexpected status), or answers in ${ms(t.warningLatencyMs)} or more`,
    critical: `it fails ${t.criticalFailures} times in a row, or answers in its critical_latency_ms or more`,
  }),
  evaluate(input) {
    const { snapshot, unknown } = snapshotOf('http-endpoint', input.results, 'application');
    if (unknown !== undefined) return [unknown];
    const counts = endpointCounts(input);
    return snapshot.endpoints.map((endpoint) => endpointFinding(endpoint, counts[endpoint.name]?.failures ?? 0, input.thresholds));
  },
  nextState: (input) => endpointCounts(input),
  runbook: {
    summary: 'An HTTP endpoint of the application does not answer, answers with an unexpected status, or answers slowly. Users likely see errors or delays; the database may or may not be the cause.',
    steps: [
      'Look at the finding: the URL, the status and the error (refused: the service is down or not listening; timeout: it is stuck or overloaded; 5xx: it runs but fails). Request it yourself from the watcher\'s host: `curl -sS -o /dev/null -w \'%{http_code} %{time_starttransfer}s\\n\' <url>`.',
      'Is the database the cause? Check the same cluster\'s alerts: connectivity, connection saturation, lock waits and long queries often make an application\'s health check fail. The Activity view shows the application\'s sessions (application_name, client address) and what they wait on.',
      'If the database is healthy, the problem is in the application or between it and the watcher: its logs, its process manager, the load balancer, DNS or TLS certificates (an expired certificate shows in the error).',
      'A slow answer with no failure: look for lock waits and slow queries first (the Queries view), then the application\'s own resources (CPU, memory, thread pools, connection pool exhausted).',
      'Escalate to the application\'s owners when the database shows nothing wrong; to the DBA on call when it does.',
    ],
  },
};

function endpointCounts(input: CheckInput<EndpointThresholds>): Record<string, FailureCount> {
  const { snapshot } = snapshotOf('http-endpoint', input.results, 'application');
  const at = snapshotAt(input.results);
  if (snapshot === undefined || at === undefined) return {};
  return countFailures(snapshot.endpoints.map((endpoint) => ({ name: endpoint.name, failed: !endpoint.ok })), at, input.previous);
}

type SqlThresholds = { readonly criticalFailures: number };

function shown(value: number): string {
  return String(Math.round(value * 1000) / 1000);
}

/** ok / warning / critical of a value in the check's direction. */
function sqlLevel(query: CustomSqlResult, value: number): Severity {
  if (query.direction === 'below') return value <= query.critical ? 'critical' : value <= query.warning ? 'warning' : 'ok';
  return value >= query.critical ? 'critical' : value >= query.warning ? 'warning' : 'ok';
}

function sqlFinding(query: CustomSqlResult, failures: number, t: SqlThresholds): Finding {
  const id = 'custom-sql';
  const subject = `check ${query.name}`;
  const details = { target: query.target, direction: query.direction, warning: query.warning, critical: query.critical, durationMs: Math.round(query.durationMs), failures, error: query.error };
  if (query.error !== null || query.value === null) {
    const severity = failureSeverity(failures, t.criticalFailures);
    return finding(id, {
      severity, subject, value: null, threshold: null, warningThreshold: query.warning, unit: 'number',
      message: `failed ${timesInARow(failures)} on ${query.target}: ${query.error ?? 'no value'} ${failureNote(severity, t.criticalFailures)}`,
      context: { details },
    });
  }
  const severity = sqlLevel(query, query.value);
  const sign = query.direction === 'below' ? '≤' : '≥';
  const limit = severity === 'critical' ? `(critical ${sign} ${shown(query.critical)})` : `(warning ${sign} ${shown(query.warning)})`;
  return finding(id, {
    severity, subject, value: query.value, threshold: thresholdFor(severity, query.warning, query.critical), warningThreshold: query.warning, unit: 'number',
    message: `returned ${shown(query.value)} on ${query.target} ${limit}`,
    context: { details },
  });
}

/** A custom SQL check: one query whose value is compared with its own warning and critical levels. */
export const customSqlCheck: Check<SqlThresholds> = {
  id: 'custom-sql',
  title: 'Custom SQL check',
  description: 'Runs each query under health.sql in a READ ONLY transaction with its own statement_timeout, and compares the first column of the first row with the check\'s warning and critical levels, "above" (higher is worse, the default) or "below" (lower is worse: orders stopped flowing). A query that fails, times out, writes, or returns no number is a failure: a warning once, critical when it repeats.',
  cadence: 'fast',
  probes: ['application'],
  defaults: { criticalFailures: 2 },
  levels: (t) => ({
    warning: 'the value reaches the check\'s warning level, or the query fails once',
    critical: `the value reaches its critical level, or the query fails ${t.criticalFailures} times in a row`,
  }),
  evaluate(input) {
    const { snapshot, unknown } = snapshotOf('custom-sql', input.results, 'application');
    if (unknown !== undefined) return [unknown];
    const counts = sqlCounts(input);
    return snapshot.queries.map((query) => sqlFinding(query, counts[query.name]?.failures ?? 0, input.thresholds));
  },
  nextState: (input) => sqlCounts(input),
  runbook: {
    summary: 'A business-level query configured under health.sql crossed its level (orders stopped flowing, a queue is piling up…) or could not run. The value says something about the application that the database\'s own statistics cannot.',
    steps: [
      'Read the finding: the value against the level, where it ran (node/database), or why it failed. Run the query yourself on that node (`psql`, in a `begin read only;` … `rollback;`) to see the current value.',
      'The query failed: a timeout means the query is too slow for its timeout_ms (check its plan with `explain`, an index may be missing) or the server is overloaded; "refused by READ ONLY" means the query writes and must be rewritten; "not a number" means its first column must be numeric (cast it, e.g. `count(*)` or `(…)::int`); a permission error needs a GRANT to pgwarden\'s role.',
      'The value crossed its level: this is an application symptom. Check the application\'s health endpoints and logs, and the cluster\'s own alerts (lock waits or long transactions can stall writers; a lagging replica shows stale values when the check runs on a standby).',
      'Escalate to the owners of the application named in the check; the DBA on call when the cluster itself shows a problem.',
    ],
  },
};

function sqlCounts(input: CheckInput<SqlThresholds>): Record<string, FailureCount> {
  const { snapshot } = snapshotOf('custom-sql', input.results, 'application');
  const at = snapshotAt(input.results);
  if (snapshot === undefined || at === undefined) return {};
  return countFailures(snapshot.queries.map((query) => ({ name: query.name, failed: query.error !== null || query.value === null })), at, input.previous);
}
