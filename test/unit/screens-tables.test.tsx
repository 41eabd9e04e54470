import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import { bloatTone, selectedTablesRow, tablesScreen, vacuumTone } from '../../src/screens/Tables.js';
import { fixtureNow, okResult, renderScreen, resultsIn, screenProps, staleAt, tablesSnapshot } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(tablesScreen, screenProps('tables', options)).text;
}

function keys(options: PropsOptions = {}): string[] {
  return tablesScreen.model!(screenProps('tables', options)).rows.map((row) => row.key);
}

const screen80 = [
  'app: 42 tables, the 5 largest listed · 1 bloated · autovacuum off on 1',
  'tables by estimated bloat',
  ' table                      size   bloat▼ bloat%    confirmed dead rows  dead%',
  '>public.orders           5.00 GB  1.80 GB  45.0%  1.90 GB 48% 2,000,000  14.3%',
  ' audit.log_2024          2.20 GB   300 MB  14.6%                 50,000   1.0%',
  ' public.events            900 MB   100 MB  12.5%                900,000  22.5%',
  ' public.customers         120 MB        -      -                  1,000   0.1%',
  ' public.sessions          locked   locked                         1,000   0.1%',
  'invalid indexes (2): R rebuilds the selected one',
  ' index                        table                size kind    state',
  ' public.orders_customer_id_i… orders             200 MB         invalid: CREATE…',
  ' public.events_created_at_idx events            30.0 MB         being built: bu…',
  'vacuums in progress (1)',
  '     pid table                  progress            phase                running',
  '     401 public.events             37.5% ████▁▁▁▁▁▁ scanning heap          2m05s',
];

describe('Tables screen at 80×24', () => {
  it('lists tables by estimated bloat, then invalid indexes and running vacuums', () => {
    const lines = rendered();
    expect(lines.slice(0, 15)).toEqual(screen80);
    expect(lines.slice(15).every((line) => line === '')).toBe(true);
    expect(lines).toHaveLength(24);
  });

  it('shares a short screen between the sections', () => {
    const lines = rendered({ height: 12 });
    expect(lines).toEqual([...screen80.slice(0, 6), ...screen80.slice(8, 11), ...screen80.slice(12, 15)]);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ results: resultsIn('pending') }).filter((line) => line !== '')).toEqual(['waiting for the first tables snapshot…']);
    expect(rendered({ results: resultsIn('unsupported') }).filter((line) => line !== '')).toEqual([
      'tables unavailable: this role may not read the table statistics',
      'fix: GRANT pg_monitor TO the monitoring role',
    ]);
    const error = rendered({ results: resultsIn('error') });
    expect(error.slice(0, 2)).toEqual([
      'tables failed: connection lost: server closed the connection unexpectedly (pgwa…',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
    ]);
    // Two lines of banner take two lines from the tables.
    expect(error.slice(2, 8)).toEqual(screen80.slice(0, 6));
    expect(error).toHaveLength(24);
  });

  it('says when there is no invalid index and no vacuum running', () => {
    const quiet = { ...tablesSnapshot, invalidIndexes: [], vacuums: [] };
    const lines = rendered({ results: resultsIn('ok', { tables: okResult(quiet) }) });
    expect(lines.slice(8, 14)).toEqual([
      'invalid indexes (0): R rebuilds the selected one',
      ' index                        table                size kind    state',
      ' none',
      'vacuums in progress (0)',
      '     pid table                  progress            phase                running',
      ' none',
    ]);
  });
});

describe('Tables screen at 200×50', () => {
  it('shows vacuum history, the autovacuum setting and full index definitions', () => {
    const lines = rendered({ width: 200, height: 50, viewState: { selectedKey: 'index:public.orders_customer_id_idx' } });
    expect(lines.slice(0, 15)).toEqual([
      'app: 42 tables, the 5 largest listed · 1 bloated · autovacuum off on 1',
      'tables by estimated bloat',
      ' table                      size   bloat▼ bloat%    confirmed dead rows  dead% autovacuumed    vacuumed autovacuum',
      ' public.orders           5.00 GB  1.80 GB  45.0%  1.90 GB 48% 2,000,000  14.3%    3d00h ago       never on',
      ' audit.log_2024          2.20 GB   300 MB  14.6%                 50,000   1.0%    1h00m ago       never on',
      ' public.events            900 MB   100 MB  12.5%                900,000  22.5%        never  10d00h ago OFF',
      ' public.customers         120 MB        -      -                  1,000   0.1%    1h00m ago       never on',
      ' public.sessions          locked   locked                         1,000   0.1%    1h00m ago       never on',
      'invalid indexes (2): R rebuilds the selected one',
      ' index                        table                size kind    state',
      '>public.orders_customer_id_i… orders             200 MB         invalid: CREATE INDEX orders_customer_id_idx ON public.orders USING btree (customer_id)',
      ' public.events_created_at_idx events            30.0 MB         being built: building index: scanning table',
      'vacuums in progress (1)',
      '     pid table                  progress                      phase                running kind',
      '     401 public.events             37.5% ████████▁▁▁▁▁▁▁▁▁▁▁▁ scanning heap          2m05s autovacuum',
    ]);
    expect(lines).toHaveLength(50);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('waiting for the first tables snapshot…');
    expect(rendered({ width: 200, height: 50, results: resultsIn('unsupported') }).slice(0, 2)).toEqual([
      'tables unavailable: this role may not read the table statistics',
      'fix: GRANT pg_monitor TO the monitoring role',
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[0]).toBe('tables failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
    expect(error[2]).toBe('app: 42 tables, the 5 largest listed · 1 bloated · autovacuum off on 1');
  });
});

describe('Tables model', () => {
  const defaultKeys = [
    'table:public.orders', 'table:audit.log_2024', 'table:public.events', 'table:public.customers', 'table:public.sessions',
    'index:public.orders_customer_id_idx', 'index:public.events_created_at_idx',
  ];

  it('lists tables by estimated bloat, then the invalid indexes', () => {
    expect(keys()).toEqual(defaultKeys);
    expect(tablesScreen.model!(screenProps('tables')).defaultSort).toEqual({ column: 'bloat', descending: true });
  });

  it('sorts the tables by the chosen column; the invalid indexes stay under them', () => {
    const byDead = { sort: { column: 'deadPercent', descending: true } };
    expect(keys({ viewState: byDead })).toEqual([
      'table:public.events', 'table:public.orders', 'table:audit.log_2024', 'table:public.customers', 'table:public.sessions',
      'index:public.orders_customer_id_idx', 'index:public.events_created_at_idx',
    ]);
    expect(rendered({ viewState: byDead })[2]).toBe(' table                      size    bloat bloat%    confirmed dead rows dead%▼');
    expect(rendered({ viewState: byDead })[3]).toBe('>public.events            900 MB   100 MB  12.5%                900,000  22.5%');
    const bySize = keys({ viewState: { sort: { column: 'size', descending: false } } });
    // A locked table's size is unknown: last in both directions.
    expect(bySize.slice(0, 5)).toEqual(['table:public.customers', 'table:public.events', 'table:audit.log_2024', 'table:public.orders', 'table:public.sessions']);
  });

  it('filters by table and index names, and with a negated pattern', () => {
    expect(keys({ viewState: { filter: parseFilter('events') } })).toEqual(['table:public.events', 'index:public.events_created_at_idx']);
    expect(keys({ viewState: { filter: parseFilter('!^public\\.') } })).toEqual(['table:audit.log_2024']);
    expect(rendered({ width: 200, viewState: { filter: parseFilter('events') } })[0]).toBe('app: 42 tables, the 5 largest listed · 1 bloated · autovacuum off on 1 · filter events: 2 shown');
  });

  it('exposes schema and table for VACUUM and ANALYZE, schema and index for REINDEX', () => {
    const table = selectedTablesRow(screenProps('tables', { viewState: { selectedKey: 'table:public.events' } }));
    expect(table).toMatchObject({ kind: 'table', schema: 'public', table: 'events' });
    expect(tablesScreen.selectionOf!(table!)).toEqual({ kind: 'table', schema: 'public', name: 'events' });
    const index = selectedTablesRow(screenProps('tables', { viewState: { selectedKey: 'index:public.orders_customer_id_idx' } }));
    expect(index).toMatchObject({ kind: 'invalidIndex', schema: 'public', index: 'orders_customer_id_idx', table: 'orders' });
    expect(tablesScreen.selectionOf!(index!)).toEqual({ kind: 'index', schema: 'public', name: 'orders_customer_id_idx', invalid: true });
    expect(selectedTablesRow(screenProps('tables', { results: resultsIn('pending') }))).toBeNull();
  });
});

describe('table tones (DESIGN.md §5)', () => {
  const orders = tablesSnapshot.tables[0]!;
  const events = tablesSnapshot.tables[1]!;
  const GB = 1024 ** 3;

  it('rates bloat by the confirmed figure when there is one', () => {
    expect(bloatTone(orders)).toBe('warning');
    expect(bloatTone({ ...orders, confirmed: null, estimatedBloatBytes: 0.9 * GB })).toBeUndefined();
    expect(bloatTone({ ...orders, confirmed: { ...orders.confirmed!, bloatBytes: 6 * GB, bloatFraction: 0.6 } })).toBe('critical');
    expect(bloatTone({ ...orders, confirmed: { ...orders.confirmed!, bloatBytes: 6 * GB, bloatFraction: 0.2 } })).toBeUndefined();
  });

  it('flags autovacuum off, and dead rows piling up for a day', () => {
    expect(vacuumTone(events, fixtureNow)).toBe('critical');
    expect(vacuumTone({ ...events, autovacuumEnabled: true }, fixtureNow)).toBe('warning');
    expect(vacuumTone({ ...events, autovacuumEnabled: true, lastAutovacuum: fixtureNow }, fixtureNow)).toBeUndefined();
    expect(vacuumTone(orders, fixtureNow)).toBeUndefined();
  });
});
