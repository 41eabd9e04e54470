/** Checks on every database of the cluster: deadlocks and wraparound ages. */
import { formatCount, formatDuration, formatPercent } from '../format/units.js';
import type { DatabaseStats } from '../probes/databases.js';
import { resultOf } from '../probes/index.js';
import type { Check, Finding } from './types.js';
import { against, finding, level, numberIn, recordOf, snapshotOf, thresholdFor } from './helpers.js';

interface DeadlockState {
  readonly at: number;
  /** database oid → deadlock counter and its stats_reset (ms, or null). */
  readonly counters: Readonly<Record<string, { readonly deadlocks: number; readonly statsReset: number | null }>>;
}

function deadlockStateOf(previous: unknown): DeadlockState | undefined {
  const record = recordOf(previous);
  const at = numberIn(record?.['at']);
  const counters = recordOf(record?.['counters']);
  if (at === undefined || counters === undefined) return undefined;
  const parsed: Record<string, { deadlocks: number; statsReset: number | null }> = {};
  for (const [oid, value] of Object.entries(counters)) {
    const entry = recordOf(value);
    const deadlocks = numberIn(entry?.['deadlocks']);
    if (deadlocks !== undefined) parsed[oid] = { deadlocks, statsReset: numberIn(entry?.['statsReset']) ?? null };
  }
  return { at, counters: parsed };
}

/**
 * Deadlocks since the previous evaluation, from the cumulative counters (the probe's own delta
 * covers only its last 2 s); on the first evaluation, the probe's delta over its interval.
 */
function deadlocksSince(database: DatabaseStats, state: DeadlockState | undefined, now: Date, probeInterval: number | null): { count: number; minutes: number } | null {
  const before = state?.counters[String(database.oid)];
  if (state !== undefined && before !== undefined && !database.statsWereReset && database.deadlocks >= before.deadlocks && before.statsReset === (database.statsReset?.getTime() ?? null)) {
    const minutes = (now.getTime() - state.at) / 60_000;
    if (minutes > 0) return { count: database.deadlocks - before.deadlocks, minutes };
  }
  if (database.deadlocksDelta === null || probeInterval === null || probeInterval <= 0) return null;
  // A rate over the probe's 2 s would make one deadlock look like 30 a minute: count at least a minute.
  return { count: database.deadlocksDelta, minutes: Math.max(1, probeInterval / 60) };
}

/** Deadlocks detected since the previous evaluation, per database. */
export const deadlocksCheck: Check<{ readonly warningCount: number; readonly criticalPerMinute: number }> = {
  id: 'deadlocks',
  title: 'Deadlocks',
  description: 'Deadlocks PostgreSQL detected (and resolved by cancelling one of the transactions) since the previous evaluation, per database, from pg_stat_database.deadlocks.',
  cadence: 'normal',
  probes: ['databases'],
  defaults: { warningCount: 1, criticalPerMinute: 5 },
  levels: (t) => ({ warning: `${t.warningCount} or more deadlocks since the previous evaluation`, critical: `more than ${t.criticalPerMinute} per minute` }),
  evaluate({ results, thresholds: t, now, previous }) {
    const id = 'deadlocks';
    const { snapshot, unknown } = snapshotOf(id, results, 'databases');
    if (unknown !== undefined) return [unknown];
    const state = deadlockStateOf(previous);
    const findings: Finding[] = [];
    for (const database of snapshot.databases) {
      const since = deadlocksSince(database, state, now, snapshot.intervalSeconds);
      if (since === null || since.count < t.warningCount) continue;
      // As for the probe's delta: one deadlock seconds after the previous evaluation is not "20 per minute".
      const rateMinutes = Math.max(1, since.minutes);
      const perMinute = since.count / rateMinutes;
      const critical = perMinute > t.criticalPerMinute;
      findings.push(finding(id, {
        severity: critical ? 'critical' : 'warning', subject: `database ${database.name}`, value: since.count,
        threshold: critical ? t.criticalPerMinute * rateMinutes : t.warningCount, warningThreshold: t.warningCount, unit: 'deadlocks',
        message: `database ${database.name}: ${since.count} deadlock${since.count === 1 ? '' : 's'} in the last ${formatDuration(since.minutes * 60)} (${perMinute.toFixed(1)} per minute) ${critical ? `(critical > ${t.criticalPerMinute} per minute)` : `(warning ≥ ${t.warningCount})`}`,
        context: { details: { perMinute: Number(perMinute.toFixed(2)), totalSinceReset: database.deadlocks } },
      }));
    }
    if (findings.length > 0) return findings;
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: 0, threshold: t.warningCount, warningThreshold: t.warningCount, unit: 'deadlocks',
      message: state === undefined && snapshot.intervalSeconds === null ? 'first reading: deadlocks are counted from the next evaluation' : 'no deadlock since the previous evaluation',
    })];
  },
  nextState({ results, previous }) {
    const result = resultOf(results, 'databases');
    if (result.status !== 'ok') return previous;
    const counters: Record<string, { deadlocks: number; statsReset: number | null }> = {};
    for (const database of result.snapshot.databases) counters[String(database.oid)] = { deadlocks: database.deadlocks, statsReset: database.statsReset?.getTime() ?? null };
    return { at: result.snapshot.sampledAt.getTime(), counters } satisfies DeadlockState;
  },
  runbook: {
    summary: 'Two or more transactions waited for each other\'s locks; PostgreSQL cancelled one of them with "deadlock detected" (SQLSTATE 40P01). The application saw an error; a steady rate means a locking-order bug.',
    steps: [
      'Find the details in the server log: each deadlock logs "deadlock detected" with the processes, the lock types and the statements (`grep -A 10 "deadlock detected" <logfile>`). Setting `log_lock_waits = on` shows the waits leading up to them.',
      'Identify the statements and the application (log_line_prefix with %a and %u helps). The fix is in the application: take locks in a consistent order (e.g. update rows ordered by id), keep transactions short, or use `select ... for update` up front.',
      'Nothing needs to be done on the database right now: each deadlock is already resolved. Check that the application retries the failed transaction (40P01 is retryable).',
      'Escalate to the application owners with the statements from the log when the rate is critical or keeps recurring.',
    ],
  },
};

type FractionThresholds = { readonly warningFraction: number; readonly criticalFraction: number };

/** A wraparound check over every database, on the given age fraction. */
function wraparoundCheck(options: {
  readonly id: string;
  readonly title: string;
  readonly what: string;
  readonly description: string;
  readonly fraction: (d: DatabaseStats) => number | null;
  readonly age: (d: DatabaseStats) => number | null;
  readonly runbook: Check['runbook'];
}): Check<FractionThresholds> {
  const { id, what } = options;
  return {
    id,
    title: options.title,
    description: options.description,
    cadence: 'normal',
    probes: ['databases'],
    defaults: { warningFraction: 0.5, criticalFraction: 0.75 },
    levels: (t) => ({ warning: `${what} age at ${formatPercent(t.warningFraction, 0)} of 2^31`, critical: `at ${formatPercent(t.criticalFraction, 0)}` }),
    evaluate({ results, thresholds: t }) {
      const { snapshot, unknown } = snapshotOf(id, results, 'databases');
      if (unknown !== undefined) return [unknown];
      const measured = snapshot.databases.filter((d) => options.fraction(d) !== null);
      const findings = measured.flatMap((d) => {
        const value = options.fraction(d) ?? 0;
        const severity = level(value, t.warningFraction, t.criticalFraction);
        if (severity === 'ok') return [];
        return [finding(id, {
          severity, subject: `database ${d.name}`, value, threshold: thresholdFor(severity, t.warningFraction, t.criticalFraction), warningThreshold: t.warningFraction, unit: 'fraction',
          message: `database ${d.name}: ${what} age ${formatCount(options.age(d))} is ${formatPercent(value)} of the wraparound limit ${against(severity, t.warningFraction, t.criticalFraction, (n) => formatPercent(n))}`,
          context: { details: { age: options.age(d), allowConnections: d.allowConnections ? 'yes' : 'no' } },
        })];
      });
      if (findings.length > 0) return findings;
      const highest = [...measured].sort((a, b) => (options.fraction(b) ?? 0) - (options.fraction(a) ?? 0))[0];
      return [finding(id, {
        severity: 'ok', subject: 'cluster', value: highest === undefined ? null : options.fraction(highest), threshold: t.warningFraction, warningThreshold: t.warningFraction, unit: 'fraction',
        message: highest === undefined
          ? `no ${what} age measured`
          : `highest ${what} age: database ${highest.name} at ${formatPercent(options.fraction(highest))} (warning ≥ ${formatPercent(t.warningFraction)})`,
      })];
    },
    runbook: options.runbook,
  };
}

/** Transaction ID age of each database against the 2^31 wraparound limit. */
export const xidWraparoundCheck = wraparoundCheck({
  id: 'xid-wraparound',
  title: 'Transaction ID wraparound',
  what: 'XID',
  description: 'age(datfrozenxid) of each database as a share of 2^31. At about 2^31 − 3 million the server refuses new transactions until the database is vacuumed, which is an outage.',
  fraction: (d) => d.xidFraction,
  age: (d) => d.xidAge,
  runbook: {
    summary: 'The oldest unfrozen transaction ID of a database is getting old. Vacuum freezes old rows to advance it; something is preventing that, or autovacuum cannot keep up. Left alone, the server stops accepting writes.',
    steps: [
      'Which tables hold it back: connect to the database and run `select c.oid::regclass, age(c.relfrozenxid), pg_size_pretty(pg_total_relation_size(c.oid)) from pg_class c where c.relkind in (\'r\',\'m\',\'t\') order by 2 desc limit 10;`',
      'What prevents freezing: an old transaction or an xmin held by a slot or prepared transaction (see the oldest-transaction runbook: `select max(age(backend_xmin)) from pg_stat_activity;`, `select slot_name, xmin, catalog_xmin from pg_replication_slots;`, `select * from pg_prepared_xacts;`). Remove that first, or vacuum achieves nothing.',
      'Is an anti-wraparound autovacuum already running? `select pid, relid::regclass, phase, heap_blks_scanned, heap_blks_total from pg_stat_progress_vacuum;` — never cancel it; it restarts from the beginning.',
      'Otherwise freeze the oldest tables by hand, one at a time, during quieter hours if possible: `vacuum (freeze, verbose) <table>;` (it takes only a SHARE UPDATE EXCLUSIVE lock; reads and writes continue). Raise `maintenance_work_mem` for the session to speed it up.',
      'Escalate at critical: past 75 % the margin is measured in days or hours on a busy system; get a DBA to plan the freeze before the server forces it.',
    ],
  },
});

/** Multixact ID age of each database against the 2^31 wraparound limit. */
export const multixactWraparoundCheck = wraparoundCheck({
  id: 'multixact-wraparound',
  title: 'Multixact wraparound',
  what: 'multixact',
  description: 'mxid_age(datminmxid) of each database as a share of 2^31. Multixacts come from row locks shared by several transactions (foreign keys, SELECT FOR SHARE); they wrap around like transaction IDs.',
  fraction: (d) => d.multixactFraction,
  age: (d) => d.multixactAge,
  runbook: {
    summary: 'The oldest multixact ID of a database is getting old. Vacuum must freeze the tables that still reference old multixacts; until it does, the server eventually refuses writes.',
    steps: [
      'Which tables hold it back: `select c.oid::regclass, mxid_age(c.relminmxid), pg_size_pretty(pg_total_relation_size(c.oid)) from pg_class c where c.relkind in (\'r\',\'m\',\'t\') order by 2 desc limit 10;`',
      'Check for old transactions and prepared transactions as for XID wraparound: they keep old multixacts alive.',
      'Freeze the oldest tables: `vacuum (freeze, verbose) <table>;`. Lowering `autovacuum_multixact_freeze_max_age` makes autovacuum start earlier next time.',
      'Heavy use of `select ... for share` or foreign keys on hot rows consumes multixacts fast; mention it to the application owners.',
      'Escalate at critical, as for XID wraparound.',
    ],
  },
});
