/** Slow and regressed statements, from pg_stat_statements counters diffed between evaluations. */
import { formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Statement } from '../probes/statements.js';
import type { Check, Finding } from './types.js';
import { finding, numberIn, recordOf, snapshotOf } from './helpers.js';

interface StatementsState {
  /** Statement key → cumulative calls and execution time at the previous evaluation. */
  readonly counters: Readonly<Record<string, { readonly calls: number; readonly totalExecMs: number }>>;
}

function keyOf(s: Statement): string | null {
  return s.queryId === null ? null : `${s.queryId}/${s.userId}/${s.dbId}/${String(s.toplevel)}`;
}

function stateOf(previous: unknown): StatementsState | undefined {
  const counters = recordOf(recordOf(previous)?.['counters']);
  if (counters === undefined) return undefined;
  const parsed: Record<string, { calls: number; totalExecMs: number }> = {};
  for (const [key, value] of Object.entries(counters)) {
    const entry = recordOf(value);
    const calls = numberIn(entry?.['calls']);
    const totalExecMs = numberIn(entry?.['totalExecMs']);
    if (calls !== undefined && totalExecMs !== undefined) parsed[key] = { calls, totalExecMs };
  }
  return { counters: parsed };
}

const ms = (n: number): string => formatDuration(n / 1000);

type StatementThresholds = {
  readonly warningMeanMs: number;
  readonly minCalls: number;
  readonly warningRegression: number;
  /** A regression below this mean is noise (2 × 0.05 ms is not a problem). */
  readonly regressionMinMeanMs: number;
  readonly criticalMeanMs: number;
  readonly criticalRegression: number;
};

/**
 * Statements whose mean time over the interval since the previous evaluation is slow, or several
 * times their baseline: the mean since the counters were last reset, as of the previous evaluation.
 */
export const slowQueriesCheck: Check<StatementThresholds> = {
  id: 'slow-queries',
  title: 'Slow or regressed queries',
  description: 'Statements (pg_stat_statements, the 100 most expensive) whose mean execution time over the interval since the previous evaluation is slow, or a multiple of their baseline (their long-run mean as of the previous evaluation). Counters are never reset by pgwarden; a reset by someone else skips one interval.',
  cadence: 'normal',
  probes: ['statements'],
  defaults: { warningMeanMs: 100, minCalls: 50, warningRegression: 2, regressionMinMeanMs: 10, criticalMeanMs: 1000, criticalRegression: 3 },
  levels: (t) => ({
    warning: `mean ≥ ${ms(t.warningMeanMs)} over ≥ ${t.minCalls} calls, or ≥ ${t.warningRegression} × baseline (and ≥ ${ms(t.regressionMinMeanMs)})`,
    critical: `mean ≥ ${ms(t.criticalMeanMs)} and ≥ ${t.criticalRegression} × baseline`,
  }),
  evaluate({ results, thresholds: t, previous }) {
    const id = 'slow-queries';
    const { snapshot, unknown } = snapshotOf(id, results, 'statements');
    if (unknown !== undefined) return [unknown];
    const state = stateOf(previous);
    const findings: Finding[] = [];
    for (const s of snapshot.statements) {
      const key = keyOf(s);
      const before = key === null ? undefined : state?.counters[key];
      if (before === undefined || s.calls < before.calls) continue;
      const calls = s.calls - before.calls;
      if (calls < t.minCalls) continue;
      const mean = (s.totalExecMs - before.totalExecMs) / calls;
      const baseline = before.calls > 0 ? before.totalExecMs / before.calls : null;
      const ratio = baseline !== null && baseline > 0 ? mean / baseline : null;
      const critical = mean >= t.criticalMeanMs && ratio !== null && ratio >= t.criticalRegression;
      const slow = mean >= t.warningMeanMs;
      const regressed = ratio !== null && ratio >= t.warningRegression && mean >= t.regressionMinMeanMs;
      if (!critical && !slow && !regressed) continue;
      const who = `${s.user ?? '?'} on ${s.database ?? '?'}`;
      const versus = baseline === null ? '' : `, ${ratio === null ? '?' : ratio.toFixed(1)}× its baseline ${ms(baseline)}`;
      const limits = critical
        ? `(critical ≥ ${ms(t.criticalMeanMs)} and ≥ ${t.criticalRegression}× baseline)`
        : slow ? `(warning ≥ ${ms(t.warningMeanMs)} with ≥ ${t.minCalls} calls)` : `(warning ≥ ${t.warningRegression}× baseline)`;
      findings.push(finding(id, {
        severity: critical ? 'critical' : 'warning', subject: `statement ${s.queryId ?? '?'}`, value: mean,
        threshold: critical ? t.criticalMeanMs : t.warningMeanMs, warningThreshold: t.warningMeanMs, unit: 'ms',
        message: `statement ${s.queryId ?? '?'} (${who}): mean ${ms(mean)} over ${calls} calls${versus} ${limits}`,
        context: { details: { query: s.query, calls, baselineMs: baseline, user: s.user, database: s.database } },
      }));
    }
    if (findings.length > 0) return findings;
    const note = state === undefined ? 'first reading: statements are compared from the next evaluation' : snapshot.reset ? 'the counters were reset: compared again from the next evaluation' : `no slow or regressed statement among the top ${snapshot.statements.length}`;
    return [finding(id, { severity: 'ok', subject: 'cluster', value: null, threshold: t.warningMeanMs, warningThreshold: t.warningMeanMs, unit: 'ms', message: note })];
  },
  nextState({ results, previous }) {
    const result = resultOf(results, 'statements');
    if (result.status !== 'ok') return previous;
    const counters: Record<string, { calls: number; totalExecMs: number }> = {};
    for (const s of result.snapshot.statements) {
      const key = keyOf(s);
      if (key !== null) counters[key] = { calls: s.calls, totalExecMs: s.totalExecMs };
    }
    return { counters } satisfies StatementsState;
  },
  runbook: {
    summary: 'A statement got slow: its recent mean time is high, or several times what it usually takes. Usually a changed plan (new statistics, data growth, a dropped index), lock waits or I/O pressure.',
    steps: [
      'Get the statement: the finding\'s details carry the normalized text and the queryid; `select query, calls, mean_exec_time, rows, shared_blks_read, temp_blks_written from pg_stat_statements where queryid = <queryid>;`',
      'Explain it with realistic parameters, on a standby if possible: `explain (analyze, buffers) <query>;` Compare with what you expect: a sequential scan on a large table, a bad row estimate, a nested loop over many rows.',
      'Quick fixes that are safe online: `analyze <table>;` when the estimates are off; `create index concurrently ...` when an index is missing. A regression right after a deploy points at the application change.',
      'If it waits rather than works (check wait events in the Activity view), see lock-waits or the host\'s I/O.',
      'Escalate to the application owners with the query and its plan when the fix is in the application (an unbounded query, an N+1 pattern). Never reset pg_stat_statements to "clear" the alert: it destroys the baseline.',
    ],
  },
};
