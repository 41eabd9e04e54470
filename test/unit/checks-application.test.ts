import { describe, expect, it } from 'vitest';
import { customSqlCheck, httpEndpointCheck } from '../../src/checks/application.js';
import { checkById } from '../../src/checks/catalogue.js';
import type { Check, Finding, Thresholds } from '../../src/checks/types.js';
import type { ApplicationSnapshot, CustomSqlResult, EndpointStatus } from '../../src/probes/application.js';
import type { Results } from '../../src/probes/runner.js';
import { errorResult, fixtureNow, okResult, resultsWith, run, stateAfter, summary } from '../fixtures/checks.js';

const second = 1000;

function endpoint(fields: Partial<EndpointStatus> = {}): EndpointStatus {
  return { name: 'api', url: 'https://api.example.com/healthz', ok: true, status: 200, latencyMs: 120, error: null, warningLatencyMs: null, criticalLatencyMs: null, ...fields };
}

function query(fields: Partial<CustomSqlResult> = {}): CustomSqlResult {
  return { name: 'orders-flowing', target: 'db1/shop', value: 12, error: null, warning: 1, critical: 0, direction: 'below', durationMs: 4, ...fields };
}

/** The application snapshot taken `at`. */
function app(snapshot: Partial<ApplicationSnapshot>, at: Date = fixtureNow): Results {
  return resultsWith({ application: okResult({ endpoints: [], queries: [], ...snapshot }, at) });
}

/**
 * Evaluates a sequence of snapshots (one a minute) as the watcher does: each evaluation with the
 * state the previous one left. Returns the findings of each.
 */
function sequence<T extends Thresholds>(check: Check<T>, snapshots: readonly Partial<ApplicationSnapshot>[]): Finding[][] {
  let previous: unknown;
  return snapshots.map((snapshot, index) => {
    const at = new Date(fixtureNow.getTime() + index * 60 * second);
    const results = app(snapshot, at);
    const findings = run(check, results, { previous, now: at });
    previous = stateAfter(check, results, previous, at);
    return findings;
  });
}

describe('http-endpoint', () => {
  it('is in the catalogue, fast, and reads the application snapshot', () => {
    expect(checkById('http-endpoint')).toBe(httpEndpointCheck);
    expect(checkById('custom-sql')).toBe(customSqlCheck);
    expect(httpEndpointCheck.cadence).toBe('fast');
    expect(httpEndpointCheck.probes).toEqual(['application']);
  });

  it('a quick 200 is ok, with the latency against the warning level', () => {
    const [ok] = run(httpEndpointCheck, app({ endpoints: [endpoint()] }));
    expect(ok).toMatchObject({ severity: 'ok', subject: 'endpoint api', value: 120, unit: 'ms', warningThreshold: 1000 });
    expect(ok?.message).toBe('https://api.example.com/healthz answered HTTP 200 in 120ms (warning ≥ 1.0s)');
    expect(ok?.context.details).toMatchObject({ url: 'https://api.example.com/healthz', status: 200, failures: 0 });
  });

  it('a slow answer is a warning over the check threshold, critical over the endpoint\'s critical latency', () => {
    const results = app({
      endpoints: [
        endpoint({ name: 'slow', latencyMs: 1500 }),
        endpoint({ name: 'own', latencyMs: 400, warningLatencyMs: 300, criticalLatencyMs: 2000 }),
        endpoint({ name: 'crawl', latencyMs: 2500, warningLatencyMs: 300, criticalLatencyMs: 2000 }),
        endpoint({ name: 'no-critical', latencyMs: 9000 }),
      ],
    });
    expect(summary(run(httpEndpointCheck, results))).toEqual([
      ['warning', 'endpoint slow', 'https://api.example.com/healthz answered HTTP 200 in 1.5s (warning ≥ 1.0s)'],
      ['warning', 'endpoint own', 'https://api.example.com/healthz answered HTTP 200 in 400ms (warning ≥ 300ms)'],
      ['critical', 'endpoint crawl', 'https://api.example.com/healthz answered HTTP 200 in 2.5s (critical ≥ 2.0s)'],
      // Without critical_latency_ms, latency alone is never critical.
      ['warning', 'endpoint no-critical', 'https://api.example.com/healthz answered HTTP 200 in 9.0s (warning ≥ 1.0s)'],
    ]);
    // The cluster-wide threshold can be overridden like any other.
    expect(run(httpEndpointCheck, app({ endpoints: [endpoint({ latencyMs: 1500 })] }), { overrides: { warningLatencyMs: 2000 } })[0]?.severity).toBe('ok');
  });

  it('a wrong status fails: warning the first time, critical the second, ok again resets the count', () => {
    const down = endpoint({ ok: false, status: 500, error: 'HTTP 500 Internal Server Error (expected 2xx)' });
    const runs = sequence(httpEndpointCheck, [{ endpoints: [down] }, { endpoints: [down] }, { endpoints: [down] }, { endpoints: [endpoint()] }, { endpoints: [down] }]);
    expect(runs.map((findings) => findings.map((f) => f.severity))).toEqual([['warning'], ['critical'], ['critical'], ['ok'], ['warning']]);
    expect(runs[0]?.[0]?.message).toBe('https://api.example.com/healthz failed once: HTTP 500 Internal Server Error (expected 2xx) (critical after 2 in a row)');
    expect(runs[1]?.[0]?.message).toBe('https://api.example.com/healthz failed 2 times in a row: HTTP 500 Internal Server Error (expected 2xx) (critical: 2 failures in a row)');
    expect(runs[2]?.[0]?.context.details).toMatchObject({ failures: 3, status: 500 });
  });

  it('no answer at all is a failure with the reason and no latency', () => {
    const refused = endpoint({ ok: false, status: null, latencyMs: null, error: 'connection refused (is the service running and listening there?)' });
    const [first] = run(httpEndpointCheck, app({ endpoints: [refused] }));
    expect(first).toMatchObject({ severity: 'warning', value: null, threshold: null });
    expect(first?.message).toContain('failed once: connection refused');
  });

  it('counts each endpoint on its own, and forgets endpoints that are gone', () => {
    const down = (name: string): EndpointStatus => endpoint({ name, ok: false, status: 503, error: 'HTTP 503 (expected 2xx)' });
    const runs = sequence(httpEndpointCheck, [
      { endpoints: [down('a'), endpoint({ name: 'b' })] },
      { endpoints: [down('a'), down('b')] },
      { endpoints: [down('b')] },
      { endpoints: [down('a'), down('b')] },
    ]);
    expect(runs.map((findings) => findings.map((f) => `${f.subject}=${f.severity}`))).toEqual([
      ['endpoint a=warning', 'endpoint b=ok'],
      ['endpoint a=critical', 'endpoint b=warning'],
      ['endpoint b=critical'],
      ['endpoint a=warning', 'endpoint b=critical'],
    ]);
  });

  it('evaluating the same snapshot again does not count its failure twice', () => {
    const results = app({ endpoints: [endpoint({ ok: false, status: 500, error: 'HTTP 500 (expected 2xx)' })] });
    const state = stateAfter(httpEndpointCheck, results);
    expect(run(httpEndpointCheck, results, { previous: state })[0]?.severity).toBe('warning');
    expect(stateAfter(httpEndpointCheck, results, state)).toEqual(state);
  });

  it('criticalFailures sets how many failures in a row are critical', () => {
    const down = endpoint({ ok: false, status: 500, error: 'HTTP 500 (expected 2xx)' });
    expect(run(httpEndpointCheck, app({ endpoints: [down] }), { overrides: { criticalFailures: 1 } })[0]?.severity).toBe('critical');
  });

  it('a state from elsewhere is ignored rather than trusted', () => {
    const down = endpoint({ ok: false, status: 500, error: 'HTTP 500 (expected 2xx)' });
    expect(run(httpEndpointCheck, app({ endpoints: [down] }), { previous: { api: { failures: 'many' } } })[0]?.severity).toBe('warning');
    expect(run(httpEndpointCheck, app({ endpoints: [down] }), { previous: ['nonsense'] })[0]?.severity).toBe('warning');
  });

  it('nothing configured: no finding; no snapshot at all: UNKNOWN with the reason', () => {
    expect(run(httpEndpointCheck, app({}))).toEqual([]);
    expect(summary(run(httpEndpointCheck, resultsWith({})))).toEqual([['unknown', 'cluster', 'cannot evaluate: the application probe has not run yet']]);
    expect(summary(run(httpEndpointCheck, resultsWith({ application: errorResult<ApplicationSnapshot>(undefined, 'boom') })))).toEqual([['unknown', 'cluster', 'cannot evaluate: the application probe failed: boom']]);
  });
});

describe('custom-sql', () => {
  it('direction below: lower values are worse (orders stopped flowing)', () => {
    const results = app({ queries: [query({ name: 'many', value: 12 }), query({ name: 'one', value: 1 }), query({ name: 'none', value: 0 })] });
    expect(summary(run(customSqlCheck, results))).toEqual([
      ['ok', 'check many', 'returned 12 on db1/shop (warning ≤ 1)'],
      ['warning', 'check one', 'returned 1 on db1/shop (warning ≤ 1)'],
      ['critical', 'check none', 'returned 0 on db1/shop (critical ≤ 0)'],
    ]);
    expect(run(customSqlCheck, results)[2]).toMatchObject({ value: 0, threshold: 0, warningThreshold: 1, unit: 'number' });
  });

  it('direction above: higher values are worse (a queue piling up)', () => {
    const above = (name: string, value: number): CustomSqlResult => query({ name, value, warning: 100, critical: 1000, direction: 'above' });
    const results = app({ queries: [above('low', 99.5), above('high', 100), above('huge', 5000)] });
    expect(summary(run(customSqlCheck, results))).toEqual([
      ['ok', 'check low', 'returned 99.5 on db1/shop (warning ≥ 100)'],
      ['warning', 'check high', 'returned 100 on db1/shop (warning ≥ 100)'],
      ['critical', 'check huge', 'returned 5000 on db1/shop (critical ≥ 1000)'],
    ]);
  });

  it('a value crossing its critical level is critical at once; a failing query needs two in a row', () => {
    const failing = query({ value: null, error: 'its first column "status" is "green", not a number' });
    const runs = sequence(customSqlCheck, [{ queries: [failing] }, { queries: [failing] }, { queries: [query({ value: 0 })] }, { queries: [query()] }, { queries: [failing] }]);
    expect(runs.map((findings) => findings.map((f) => f.severity))).toEqual([['warning'], ['critical'], ['critical'], ['ok'], ['warning']]);
    expect(runs[0]?.[0]?.message).toBe('failed once on db1/shop: its first column "status" is "green", not a number (critical after 2 in a row)');
    expect(runs[0]?.[0]).toMatchObject({ value: null, threshold: null, subject: 'check orders-flowing' });
    expect(runs[1]?.[0]?.context.details).toMatchObject({ failures: 2, error: 'its first column "status" is "green", not a number' });
  });

  it('a query error is a failure too, with the reason', () => {
    const timeout = query({ value: null, error: 'cancelled after timeout_ms (5000 ms): make the query faster or raise timeout_ms' });
    const [first] = run(customSqlCheck, app({ queries: [timeout] }));
    expect(first).toMatchObject({ severity: 'warning', value: null });
    expect(first?.message).toBe('failed once on db1/shop: cancelled after timeout_ms (5000 ms): make the query faster or raise timeout_ms (critical after 2 in a row)');
  });

  it('nothing configured: no finding; no snapshot: UNKNOWN', () => {
    expect(run(customSqlCheck, app({}))).toEqual([]);
    expect(run(customSqlCheck, resultsWith({}))[0]?.severity).toBe('unknown');
  });

  it('levels and runbooks say what the checks do', () => {
    expect(httpEndpointCheck.levels(httpEndpointCheck.defaults)).toEqual({
      warning: 'an endpoint fails once (no answer, timeout or an unexpected status), or answers in 1.0s or more',
      critical: 'it fails 2 times in a row, or answers in its critical_latency_ms or more',
    });
    expect(customSqlCheck.levels(customSqlCheck.defaults).critical).toBe('the value reaches its critical level, or the query fails 2 times in a row');
    for (const check of [httpEndpointCheck, customSqlCheck]) expect(check.runbook.steps.length).toBeGreaterThanOrEqual(3);
  });
});
