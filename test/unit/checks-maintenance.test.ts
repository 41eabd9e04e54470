import { describe, expect, it } from 'vitest';
import { deadlocksCheck, multixactWraparoundCheck, xidWraparoundCheck } from '../../src/checks/databases.js';
import { slowQueriesCheck } from '../../src/checks/statements.js';
import { autovacuumCheck, bloatCheck, invalidIndexesCheck } from '../../src/checks/tables.js';
import type { DatabasesSnapshot } from '../../src/probes/databases.js';
import type { StatementsSnapshot } from '../../src/probes/statements.js';
import { databasesSnapshot, serverSnapshot, statementsSnapshot, tablesSnapshot } from '../fixtures/snapshots.js';
import { ago, okResults, run, stateAfter, summary } from '../fixtures/checks.js';

const GB = 1024 ** 3;
const withDatabases = (change: (d: DatabasesSnapshot['databases'][number]) => Partial<DatabasesSnapshot['databases'][number]>) =>
  okResults({ databases: { ...databasesSnapshot, databases: databasesSnapshot.databases.map((d) => ({ ...d, ...change(d) })) } });

describe('deadlocks', () => {
  it('counts from the cumulative counters since the previous evaluation', () => {
    const state = stateAfter(deadlocksCheck, okResults({ databases: { ...databasesSnapshot, sampledAt: ago(300) } }));
    expect(summary(run(deadlocksCheck, okResults({ databases: databasesSnapshot }), { previous: state }))).toEqual([['ok', 'cluster', 'no deadlock since the previous evaluation']]);
    const three = withDatabases((d) => (d.name === 'app' ? { deadlocks: 3 } : {}));
    expect(summary(run(deadlocksCheck, three, { previous: state }))).toEqual([['warning', 'database app', 'database app: 3 deadlocks in the last 5m00s (0.6 per minute) (warning ≥ 1)']]);
    const many = withDatabases((d) => (d.name === 'app' ? { deadlocks: 40 } : {}));
    const critical = run(deadlocksCheck, many, { previous: state })[0];
    expect([critical?.severity, critical?.message, critical?.threshold]).toEqual(['critical', 'database app: 40 deadlocks in the last 5m00s (8.0 per minute) (critical > 5 per minute)', 25]);
    // A stats reset is not a negative count: the probe's own delta is used instead.
    const reset = withDatabases((d) => (d.name === 'app' ? { deadlocks: 0, statsWereReset: true, deadlocksDelta: null } : {}));
    expect(run(deadlocksCheck, reset, { previous: state })[0]?.severity).toBe('ok');
    // Without a previous evaluation, the probe's delta over its own interval.
    const first = withDatabases((d) => (d.name === 'app' ? { deadlocksDelta: 1 } : {}));
    expect(summary(run(deadlocksCheck, first))).toEqual([['warning', 'database app', 'database app: 1 deadlock in the last 1m00s (1.0 per minute) (warning ≥ 1)']]);
  });

  it('counts the rate over at least a minute when evaluations are seconds apart (seen on a real server)', () => {
    const state = stateAfter(deadlocksCheck, okResults({ databases: { ...databasesSnapshot, sampledAt: ago(3) } }));
    const one = withDatabases((d) => (d.name === 'app' ? { deadlocks: 1 } : {}));
    expect(summary(run(deadlocksCheck, one, { previous: state }))).toEqual([['warning', 'database app', 'database app: 1 deadlock in the last 3.0s (1.0 per minute) (warning ≥ 1)']]);
    const six = withDatabases((d) => (d.name === 'app' ? { deadlocks: 6 } : {}));
    const critical = run(deadlocksCheck, six, { previous: state })[0];
    expect([critical?.severity, critical?.message, critical?.threshold]).toEqual(['critical', 'database app: 6 deadlocks in the last 3.0s (6.0 per minute) (critical > 5 per minute)', 5]);
  });
});

describe('wraparound', () => {
  it('XID age per database against 50 % / 75 % of 2^31', () => {
    expect(summary(run(xidWraparoundCheck, okResults({ databases: databasesSnapshot })))).toEqual([['ok', 'cluster', 'highest XID age: database app at 0.9% (warning ≥ 50.0%)']]);
    const old = withDatabases((d) => (d.name === 'warehouse' ? { xidAge: 1_200_000_000, xidFraction: 1_200_000_000 / 2 ** 31 } : d.name === 'app' ? { xidAge: 1_700_000_000, xidFraction: 1_700_000_000 / 2 ** 31 } : {}));
    expect(summary(run(xidWraparoundCheck, old))).toEqual([
      ['critical', 'database app', 'database app: XID age 1,700,000,000 is 79.2% of the wraparound limit (critical ≥ 75.0%)'],
      ['warning', 'database warehouse', 'database warehouse: XID age 1,200,000,000 is 55.9% of the wraparound limit (warning ≥ 50.0%)'],
    ]);
  });

  it('multixact age likewise', () => {
    const old = withDatabases((d) => (d.name === 'app' ? { multixactAge: 1_100_000_000, multixactFraction: 1_100_000_000 / 2 ** 31 } : {}));
    expect(summary(run(multixactWraparoundCheck, old))).toEqual([['warning', 'database app', 'database app: multixact age 1,100,000,000 is 51.2% of the wraparound limit (warning ≥ 50.0%)']]);
    expect(run(multixactWraparoundCheck, old, { overrides: { criticalFraction: 0.5 } })[0]?.severity).toBe('critical');
    expect(run(multixactWraparoundCheck, okResults({ databases: databasesSnapshot }))[0]?.severity).toBe('ok');
  });
});

describe('autovacuum', () => {
  it('critical when off for the server, warning for an overdue table', () => {
    const off = { ...serverSnapshot, settings: [{ name: 'autovacuum', setting: 'off', source: 'configuration file', unit: null, pendingRestart: false }] };
    expect(summary(run(autovacuumCheck, okResults({ server: off, tables: tablesSnapshot })))).toEqual([
      ['critical', 'cluster', 'autovacuum is off for the whole server: dead rows accumulate and wraparound protection depends on manual vacuums'],
      ['warning', 'table public.events', 'table public.events: 900,000 dead rows (22.5%), last vacuum 10d00h ago, autovacuum_enabled = false on this table (warning ≥ 1d00h)'],
    ]);
    const vacuumed = { ...tablesSnapshot, tables: tablesSnapshot.tables.map((t) => ({ ...t, lastAutovacuum: ago(3600) })) };
    const on = { ...serverSnapshot, settings: [{ ...off.settings[0]!, setting: 'on' }] };
    expect(summary(run(autovacuumCheck, okResults({ server: on, tables: vacuumed })))).toEqual([['ok', 'cluster', 'autovacuum on; no overdue table among 5 in app']]);
  });
});

describe('bloat', () => {
  it('prefers the confirmed figure; warning and critical by size and share', () => {
    expect(summary(run(bloatCheck, okResults({ tables: tablesSnapshot })))).toEqual([
      ['warning', 'table public.orders', 'table public.orders: 1.90 GB reclaimable, 47.5% of 4.00 GB (measured with pgstattuple) (warning ≥ 1.00 GB and 30.0%)'],
    ]);
    const huge = { ...tablesSnapshot, tables: tablesSnapshot.tables.map((t) => (t.name === 'log_2024' ? { ...t, tableBytes: 12 * GB, estimatedBloatBytes: 7 * GB, estimatedBloatFraction: 7 / 12 } : t)) };
    expect(summary(run(bloatCheck, okResults({ tables: huge })))[1]).toEqual(['critical', 'table audit.log_2024', 'table audit.log_2024: 7.00 GB reclaimable, 58.3% of 12.0 GB (estimated from statistics) (critical ≥ 5.00 GB and 50.0%)']);
    expect(summary(run(bloatCheck, okResults({ tables: tablesSnapshot }), { overrides: { warningBytes: 2 * GB } }))).toEqual([['ok', 'cluster', 'no table or index in app with 2.00 GB and 30.0% reclaimable']]);
  });
});

describe('invalid indexes', () => {
  it('skips an index being built; critical for unique or primary', () => {
    expect(summary(run(invalidIndexesCheck, okResults({ tables: tablesSnapshot })))).toEqual([
      ['warning', 'index public.orders_customer_id_idx', 'index public.orders_customer_id_idx on public.orders is invalid (200 MB, not being built)'],
    ]);
    const unique = { ...tablesSnapshot, invalidIndexes: tablesSnapshot.invalidIndexes.map((i) => ({ ...i, unique: true, building: i.building === true ? true : null })) };
    expect(summary(run(invalidIndexesCheck, okResults({ tables: unique })))).toEqual([
      ['critical', 'index public.orders_customer_id_idx', 'unique index public.orders_customer_id_idx on public.orders is invalid (200 MB, whether it is being built cannot be seen before PostgreSQL 12): uniqueness is not enforced'],
    ]);
    const building = { ...tablesSnapshot, invalidIndexes: tablesSnapshot.invalidIndexes.filter((i) => i.building === true) };
    expect(summary(run(invalidIndexesCheck, okResults({ tables: building })))).toEqual([['ok', 'cluster', 'no invalid index in app (1 being built)']]);
  });
});

describe('slow or regressed queries', () => {
  const bump = (changes: Record<string, { calls: number; ms: number }>): StatementsSnapshot => ({
    ...statementsSnapshot,
    statements: statementsSnapshot.statements.map((s) => {
      const change = s.queryId === null ? undefined : changes[s.queryId];
      return change === undefined ? s : { ...s, calls: s.calls + change.calls, totalExecMs: s.totalExecMs + change.ms };
    }),
  });
  const state = stateAfter(slowQueriesCheck, okResults({ statements: statementsSnapshot }));

  it('compares the interval since the previous evaluation with the absolute limits and the baseline', () => {
    expect(summary(run(slowQueriesCheck, okResults({ statements: statementsSnapshot })))).toEqual([['ok', 'cluster', 'first reading: statements are compared from the next evaluation']]);
    expect(summary(run(slowQueriesCheck, okResults({ statements: bump({ '-7001': { calls: 1000, ms: 3000 } }) }), { previous: state }))).toEqual([
      ['ok', 'cluster', 'no slow or regressed statement among the top 5'],
    ]);
    // 7004's baseline is 200 ms: 60 calls at 250 ms is slow but not regressed.
    expect(summary(run(slowQueriesCheck, okResults({ statements: bump({ '7004': { calls: 60, ms: 15_000 } }) }), { previous: state }))).toEqual([
      ['warning', 'statement 7004', 'statement 7004 (web on app): mean 250ms over 60 calls, 1.3× its baseline 200ms (warning ≥ 100ms with ≥ 50 calls)'],
    ]);
    // 7002's baseline is 30 ms: 75 ms is 2.5× it.
    expect(summary(run(slowQueriesCheck, okResults({ statements: bump({ '7002': { calls: 100, ms: 7500 } }) }), { previous: state }))).toEqual([
      ['warning', 'statement 7002', 'statement 7002 (alice on app): mean 75ms over 100 calls, 2.5× its baseline 30ms (warning ≥ 2× baseline)'],
    ]);
    const critical = run(slowQueriesCheck, okResults({ statements: bump({ '7004': { calls: 50, ms: 50 * 1200 } }) }), { previous: state })[0];
    expect([critical?.severity, critical?.message, critical?.value, critical?.warningThreshold]).toEqual(['critical', 'statement 7004 (web on app): mean 1.2s over 50 calls, 6.0× its baseline 200ms (critical ≥ 1.0s and ≥ 3× baseline)', 1200, 100]);
    expect(critical?.context.details?.['query']).toBe('select count(*) from events where created_at > $1');
    // Fewer than 50 calls: not judged.
    expect(run(slowQueriesCheck, okResults({ statements: bump({ '7004': { calls: 49, ms: 49 * 1200 } }) }), { previous: state })[0]?.severity).toBe('ok');
  });
});
