import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import { makeTheme } from '../../src/components/theme.js';
import { displayWidth } from '../../src/format/text-table.js';
import type { LocksSnapshot } from '../../src/probes/locks.js';
import { lockRows, locksScreen, selectedPid } from '../../src/screens/Locks.js';
import { locksSnapshot, noLocksSnapshot, okResult, plainTheme, renderScreen, resultsIn, screenProps, staleAt } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(locksScreen, screenProps('locks', options)).text;
}

function keys(options: PropsOptions = {}): string[] {
  return locksScreen.model!(screenProps('locks', options)).rows.map((row) => row.key);
}

const tree80 = [
  '3 sessions wait on locks behind 2 root blockers · longest wait 1m35s',
  ' pid         waited▼ mode            relation         user      application sta…',
  '>101        blocks 3                                  alice     orders-api  idl…',
  ' ├─ 201        1m35s AccessExclusive public.orders    carol     migrate     act…',
  ' │  └─ 202     1m00s AccessShare     public.orders    dave      reporting   act…',
  ' └─ 203          30s Share           transactionid    web       orders-api  act…',
  ' 102        blocks 2                                  bob       billing     idl…',
  ' └─ 201        1m35s AccessExclusive public.orders    carol     migrate     act…',
  '    └─ 202     1m00s AccessShare     public.orders    dave      reporting   act…',
];

describe('Locks screen at 80×24', () => {
  it('shows the blocking tree, root blockers first, the waiter on two blockers under each of them', () => {
    const lines = rendered();
    expect(lines.slice(0, 9)).toEqual(tree80);
    expect(lines.slice(9).every((line) => line === '')).toBe(true);
    expect(lines).toHaveLength(24);
  });

  it('draws the tree with ASCII branches when the terminal cannot show box drawing', () => {
    const lines = rendered({ theme: makeTheme({ color: false, ascii: true }) });
    expect(lines.slice(2, 9).map((line) => line.slice(0, 12))).toEqual([
      '>101        ',
      ' |- 201     ',
      ' |  `- 202  ',
      ' `- 203     ',
      ' 102        ',
      ' `- 201     ',
      '    `- 202  ',
    ]);
  });

  it('says so when nobody waits', () => {
    const results = resultsIn('ok', { locks: okResult(noLocksSnapshot) });
    expect(rendered({ results }).filter((line) => line !== '')).toEqual(['no session waits on a lock']);
    expect(locksScreen.model!(screenProps('locks', { results })).rows).toEqual([]);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ results: resultsIn('pending') }).filter((line) => line !== '')).toEqual(['waiting for the first locks snapshot…']);
    expect(rendered({ results: resultsIn('unsupported') }).filter((line) => line !== '')).toEqual([
      'locks unavailable: pg_blocking_pids() needs PostgreSQL 9.6',
      'fix: upgrade the server',
    ]);
    const error = rendered({ results: resultsIn('error') });
    expect(error.slice(0, 2)).toEqual([
      'locks failed: connection lost: server closed the connection unexpectedly (pgwar…',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
    ]);
    expect(error.slice(2, 11)).toEqual(tree80);
  });
});

describe('Locks screen at 200×50', () => {
  it('shows every column with the full query', () => {
    const lines = rendered({ width: 200, height: 50, viewState: { selectedKey: '102/201' } });
    expect(lines.slice(0, 9)).toEqual([
      '3 sessions wait on locks behind 2 root blockers · longest wait 1m35s',
      ' pid         waited▼ mode            relation         user      application state         query',
      " 101        blocks 3                                  alice     orders-api  idle in trans update orders set status = 'paid' where id = 42",
      ' ├─ 201        1m35s AccessExclusive public.orders    carol     migrate     active        alter table orders add column note text',
      ' │  └─ 202     1m00s AccessShare     public.orders    dave      reporting   active        select count(*) from orders',
      " └─ 203          30s Share           transactionid    web       orders-api  active        update orders set status = 'shipped' where id = 42",
      ' 102        blocks 2                                  bob       billing     idle in trans update orders set total = total + 1 where id = 7',
      '>└─ 201        1m35s AccessExclusive public.orders    carol     migrate     active        alter table orders add column note text',
      '    └─ 202     1m00s AccessShare     public.orders    dave      reporting   active        select count(*) from orders',
    ]);
    expect(lines).toHaveLength(50);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('waiting for the first locks snapshot…');
    expect(rendered({ width: 200, height: 50, results: resultsIn('unsupported') }).slice(0, 2)).toEqual([
      'locks unavailable: pg_blocking_pids() needs PostgreSQL 9.6',
      'fix: upgrade the server',
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[0]).toBe('locks failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
    expect(error[2]).toBe('3 sessions wait on locks behind 2 root blockers · longest wait 1m35s');
  });
});

describe('Locks model', () => {
  it('keys rows by their path, so the same waiter under two blockers is two rows', () => {
    expect(keys()).toEqual(['101', '101/201', '101/201/202', '101/203', '102', '102/201', '102/201/202']);
    const rows = locksScreen.model!(screenProps('locks')).rows;
    expect(rows.filter((row) => row.pid === 201).map((row) => row.key)).toEqual(['101/201', '102/201']);
    expect(rows.find((row) => row.key === '102/201')?.waiter?.blockedBy).toEqual([101, 102]);
  });

  it('exposes the selected pid for cancel and terminate', () => {
    expect(selectedPid(screenProps('locks', { viewState: { selectedKey: '102/201/202' } }))).toBe(202);
    expect(selectedPid(screenProps('locks'))).toBe(101);
    const row = locksScreen.model!(screenProps('locks')).rows[4]!;
    expect(locksScreen.selectionOf!(row)).toEqual({ kind: 'session', pid: 102 });
    expect(selectedPid(screenProps('locks', { results: resultsIn('pending') }))).toBeNull();
  });

  it('sorts siblings, keeping every subtree under its parent', () => {
    const ascending = { sort: { column: 'waited', descending: false } };
    expect(keys({ viewState: ascending })).toEqual(['102', '102/201', '102/201/202', '101', '101/203', '101/201', '101/201/202']);
    expect(rendered({ viewState: ascending }).slice(2, 9).map((line) => line.slice(0, 12))).toEqual([
      '>102        ',
      ' └─ 201     ',
      '    └─ 202  ',
      ' 101        ',
      ' ├─ 203     ',
      ' └─ 201     ',
      '    └─ 202  ',
    ]);
  });

  it('filters with a regular expression, keeping the path from the root to each match', () => {
    const filter = { filter: parseFilter('migrate') };
    expect(keys({ viewState: filter })).toEqual(['101', '101/201', '102', '102/201']);
    const rows = locksScreen.model!(screenProps('locks', { viewState: filter })).rows;
    expect(rows.map((row) => row.context)).toEqual([true, false, true, false]);
    expect(rendered({ viewState: filter })[3]).toBe(' └─ 201     1m35s AccessExclusive public.orders    carol     migrate     active');
  });

  it('filters with a negated regular expression', () => {
    // 203 goes; 101 stays (as context) because a waiter behind it passes the filter.
    expect(keys({ viewState: { filter: parseFilter('!orders-api') } })).toEqual(['101', '101/201', '101/201/202', '102', '102/201', '102/201/202']);
    expect(keys({ viewState: { filter: parseFilter('!.') } })).toEqual([]);
    expect(rendered({ viewState: { filter: parseFilter('!.') } })[2]).toBe(' no lock wait matches the filter');
  });

  it('marks a deadlock cycle and a prepared transaction', () => {
    const waiter = locksSnapshot.waiters[0]!;
    const cycle: LocksSnapshot = {
      waiters: [{ ...waiter, pid: 501, blockedBy: [502] }, { ...waiter, pid: 502, blockedBy: [501] }, { ...waiter, pid: 503, blockedBy: [0] }],
      rootBlockers: [{ ...locksSnapshot.rootBlockers[0]!, pid: 0, preparedTransaction: true, application: null, query: null, waitingBehind: 1 }],
    };
    const rows = lockRows(cycle, plainTheme, null, { column: 'waited', descending: true });
    expect(rows.map((row) => [row.key, row.cycle])).toEqual([['0', false], ['0/503', false], ['501', false], ['501/502', false], ['501/502/501', true]]);
    const lines = rendered({ width: 120, results: resultsIn('ok', { locks: okResult(cycle) }) });
    expect(lines.slice(2, 7).map((line) => line.slice(0, 20))).toEqual([
      '>prepared   blocks 1',
      ' └─ 503        1m35s',
      ' 501           1m35s',
      ' └─ 502        1m35s',
      '    └─ 501  deadlock',
    ]);
    expect(selectedPid(screenProps('locks', { results: resultsIn('ok', { locks: okResult(cycle) }) }))).toBeNull();
    expect(locksScreen.selectionOf!(rows[0]!)).toEqual({ kind: 'none' });
  });

  it('keeps every line within the width however deep the tree', () => {
    const waiter = locksSnapshot.waiters[0]!;
    const chain: LocksSnapshot = {
      waiters: Array.from({ length: 30 }, (_, i) => ({ ...waiter, pid: 1000 + i, blockedBy: [i === 0 ? 999 : 1000 + i - 1] })),
      rootBlockers: [{ ...locksSnapshot.rootBlockers[0]!, pid: 999, waitingBehind: 30 }],
    };
    const { lines } = renderScreen(locksScreen, screenProps('locks', { results: resultsIn('ok', { locks: okResult(chain) }) }));
    expect(lines).toHaveLength(24);
    expect(lines.every((line) => displayWidth(line) <= 80)).toBe(true);
  });
});
