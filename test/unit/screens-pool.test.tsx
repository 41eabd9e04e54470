import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import { breakdownLines, pgbouncerNotConfigured, poolScreen, saturationTone } from '../../src/screens/Pool.js';
import { connectionsFrom, connectionsSnapshot, largeActivity, okResult, renderScreen, resultIn, resultsIn, screenProps, staleAt } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(poolScreen, screenProps('pool', options)).text;
}

function pools(options: PropsOptions = {}): string[] {
  return poolScreen.model!(screenProps('pool', options)).rows.map((pool) => `${pool.database}/${pool.user}`);
}

const slots80 = [
  'slots 11/97 used (11.3%) █▁▁▁▁▁▁▁▁▁ · 86 left · max_connections 100, 3 reserved',
  '11 client backends (1 pgwarden) · 1 WAL sender · 1 autovacuum worker · 1 backgr…',
  'by state                                 by application',
  'active                                7  orders-api                            2',
  'idle in transaction                   3  billing                               1',
  'idle                                  1  etl-loader                            1',
];

const pgbouncer80 = [
  'PgBouncer 1.21.0 · clients 43 active, 5 waiting · servers 21 active, 2 idle · m…',
  ' database/user          cl_active cl_waiting▼ sv_active sv_idle sv_used maxwait',
  '>app/web                       40           5        20       0       0    2.5s',
  ' app/reporting                  3           0         1       2       1     0ms',
  ' pgbouncer/pgbouncer            1           0         0       0       0     0ms',
];

describe('Pool screen at 80×24', () => {
  it('shows the slots, who holds them, and the PgBouncer pools', () => {
    const lines = rendered();
    expect(lines.slice(0, 6)).toEqual(slots80);
    expect(lines.slice(9, 19)).toEqual([
      '                                         +4 in other groups',
      'by database                              by user',
      'app                                   9  web                                   3',
      'warehouse                             2  alice                                 1',
      '                                         analyst                               1',
      '                                         bob                                   1',
      '                                         carol                                 1',
      '                                         dave                                  1',
      '                                         +3 in other groups',
      '',
    ]);
    expect(lines.slice(19)).toEqual(pgbouncer80);
    expect(lines).toHaveLength(24);
  });

  it('says PgBouncer is not configured when no DSN is set, and gives its room to the breakdowns', () => {
    const lines = rendered({ results: resultsIn('ok', { pgbouncer: resultIn('pgbouncer', 'unsupported') }) });
    expect(lines[23]).toBe(pgbouncerNotConfigured);
    expect(pgbouncerNotConfigured).toBe('PgBouncer: not configured (set clusters[].pgbouncer.dsn)');
    expect(lines[22]).toBe('');
    expect(lines[21]).toBe('                                         pgwarden                              1');
  });

  it('shows other reasons PgBouncer is unavailable with their fix', () => {
    const results = resultsIn('ok', { pgbouncer: { status: 'unsupported', unsupported: { kind: 'privilege', reason: 'the user is not in stats_users', fix: 'add it to stats_users in pgbouncer.ini' } } });
    expect(rendered({ results }).filter((line) => line !== '').slice(-2)).toEqual(['PgBouncer unavailable: the user is not in stats_users', 'fix: add it to stats_users in pgbouncer.ini']);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ results: resultsIn('pending') }).filter((line) => line !== '')).toEqual([
      'waiting for the first connections snapshot…',
      'waiting for the first PgBouncer snapshot…',
    ]);
    expect(rendered({ results: resultsIn('unsupported') }).filter((line) => line !== '')).toEqual([
      'connections unavailable: this role may not read the connection settings',
      'fix: GRANT pg_monitor TO the monitoring role',
      pgbouncerNotConfigured,
    ]);
    const error = rendered({ results: resultsIn('error') });
    expect(error.slice(0, 4)).toEqual([
      'connections failed: connection lost: server closed the connection unexpectedly …',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
      slots80[0],
      slots80[1],
    ]);
    expect(error.slice(-7)).toEqual([
      'PgBouncer failed: connection lost: server closed the connection unexpectedly (p…',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
      ...pgbouncer80,
    ]);
    expect(error).toHaveLength(24);
  });
});

describe('Pool screen at 200×50', () => {
  it('puts the four breakdowns side by side', () => {
    const lines = rendered({ width: 200, height: 50 });
    expect(lines.slice(0, 5)).toEqual([
      'slots 11/97 used (11.3%) ███▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁ · 86 left · max_connections 100, 3 reserved',
      '11 client backends (1 pgwarden) · 1 WAL sender · 1 autovacuum worker · 1 background worker · 1 other process',
      'by state                                          by application                                    by database                                       by user',
      'active                                         7  orders-api                                     2  app                                            9  web                                            3',
      'idle in transaction                            3  billing                                        1  warehouse                                      2  alice                                          1',
    ]);
    expect(lines).toContain('                                                  日本語アプリ                                   1');
    expect(lines).toContain(' database/user          cl_active cl_waiting▼ sv_active sv_idle sv_used maxwait mode');
    expect(lines).toContain('>app/web                       40           5        20       0       0    2.5s transaction');
    expect(lines).toHaveLength(50);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('waiting for the first connections snapshot…');
    expect(rendered({ width: 200, height: 50, results: resultsIn('unsupported') }).filter((line) => line !== '')).toEqual([
      'connections unavailable: this role may not read the connection settings',
      'fix: GRANT pg_monitor TO the monitoring role',
      pgbouncerNotConfigured,
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[0]).toBe('connections failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
    expect(error).toContain('PgBouncer 1.21.0 · clients 43 active, 5 waiting · servers 21 active, 2 idle · max wait 2.5s');
  });
});

describe('Pool model and figures', () => {
  it('lists pools with waiting clients first', () => {
    expect(pools()).toEqual(['app/web', 'app/reporting', 'pgbouncer/pgbouncer']);
  });

  it('sorts by the chosen column', () => {
    expect(pools({ viewState: { sort: { column: 'pool', descending: false } } })).toEqual(['app/reporting', 'app/web', 'pgbouncer/pgbouncer']);
    expect(pools({ viewState: { sort: { column: 'svIdle', descending: true } } })).toEqual(['app/reporting', 'app/web', 'pgbouncer/pgbouncer']);
    expect(rendered({ viewState: { sort: { column: 'pool', descending: false } } })[21]).toBe('>app/reporting                  3           0         1       2       1     0ms');
  });

  it('filters pools by database and user, and with a negated pattern', () => {
    expect(pools({ viewState: { filter: parseFilter('reporting') } })).toEqual(['app/reporting']);
    expect(pools({ viewState: { filter: parseFilter('!pgbouncer') } })).toEqual(['app/web', 'app/reporting']);
  });

  it('rates saturation as DESIGN.md §5 says', () => {
    expect(saturationTone(connectionsSnapshot)).toBe('ok');
    // 5,000 sessions against 100 slots: far past every limit.
    expect(saturationTone(connectionsFrom(largeActivity(100), 100))).toBe('critical');
    expect(saturationTone({ ...connectionsSnapshot, usedFraction: 0.85, slotsLeft: 14 })).toBe('warning');
    expect(saturationTone({ ...connectionsSnapshot, usedFraction: 0.5, slotsLeft: 4 })).toBe('critical');
  });

  it('sums what a breakdown cannot show', () => {
    const breakdown = { entries: [{ name: 'a', count: 5, pgwarden: 0 }, { name: null, count: 3, pgwarden: 0 }, { name: 'c', count: 2, pgwarden: 0 }], otherCount: 4 };
    expect(breakdownLines('by user', breakdown, 20, 3)).toEqual(['by user             ', 'a                  5', '+9 in other groups  ']);
    expect(breakdownLines('by user', breakdown, 20, 6)).toEqual(['by user             ', 'a                  5', '(none)             3', 'c                  2', '+4 in other groups  ']);
  });

  it('keeps the frame with a huge number of clients', () => {
    const results = resultsIn('ok', { connections: okResult(connectionsFrom(largeActivity(5000), 100)) });
    const { lines } = renderScreen(poolScreen, screenProps('pool', { results }));
    expect(lines).toHaveLength(24);
    expect(lines[0]).toBe('slots 4,991/97 used (5145.4%) ██████████ · 0 left · max_connections 100, 3 rese…');
  });
});
