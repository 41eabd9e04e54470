import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { displayWidth } from '../../src/format/text-table.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import {
  activeQueryCriticalSeconds, activeQueryWarningSeconds, activityScreen, idleInTransactionCriticalSeconds, idleInTransactionWarningSeconds,
  selectedSessionPid, sessionTone,
} from '../../src/screens/Activity.js';
import { largeActivity, okResult, renderScreen, resultsIn, screenProps, session, staleAt } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(activityScreen, screenProps('activity', options)).text;
}

/** The pids of the table rows, in order (the lines after the header). */
function pids(lines: readonly string[]): number[] {
  const header = lines.findIndex((line) => /^\s+pid[▲▼]? *user/.test(line));
  return lines.slice(header + 1).filter((line) => line !== '').map((line) => Number(/^[> ][ ●]\s*(\d+)/.exec(line)?.[1]));
}

function modelPids(options: PropsOptions = {}): number[] {
  return activityScreen.model!(screenProps('activity', options)).rows.map((s) => s.pid);
}

const defaultOrder = [301, 101, 102, 302, 401, 201, 202, 305, 203, 304, 303, 402, 403, 404];

describe('Activity screen at 80×24', () => {
  it('lists every session, the longest-running query first, background workers included', () => {
    const lines = rendered({ tagged: [101], viewState: { selectedKey: '202' } });
    expect(lines.slice(0, 17)).toEqual([
      '14 sessions (10 clients) · 6 active · 3 idle in transaction · 3 waiting on locks',
      '      pid user      database  application client        state         wait',
      '      301 etl       warehouse etl-loader  10.0.0.20     active        IO:DataFi…',
      ' ●    101 alice     app       orders-api  10.0.0.11     idle in trans Client:Cl…',
      '      102 bob       app       billing     10.0.0.12     idle in trans Client:Cl…',
      '      302 analyst   warehouse psql        local         active',
      '      401           app       autovacuum…               active',
      '      201 carol     app       migrate     10.0.0.13     active        Lock:rela…',
      '>     202 dave      app       reporting   10.0.0.14     active        Lock:rela…',
      '      305 kenji     app       日本語アプ… 10.0.0.40     idle in trans Client:Cl…',
      '      203 web       app       orders-api  10.0.0.15     active        Lock:tran…',
      '      304 web       app       web-2       10.0.0.32     active',
      '      303 web       app       web-1       10.0.0.31     idle          Client:Cl…',
      '      402 replicat…           replica-1   10.0.0.50     active        Activity:…',
      '      403                     checkpoint…                             Activity:…',
      '      404 postgres            logical re…                             Activity:…',
      '',
    ]);
    expect(lines).toHaveLength(24);
  });

  it('measures wide characters: the Japanese application name is cut at its column, two columns a character', () => {
    const { lines } = renderScreen(activityScreen, screenProps('activity'));
    const row = lines.find((line) => line.includes('kenji'));
    expect(row).toBeDefined();
    expect(displayWidth(row!)).toBe(80);
    expect(row!.indexOf('10.0.0.40')).toBe(row!.indexOf('日本語アプ…') + '日本語アプ… '.length);
  });

  it('selects the first row without a selection, and the nearest row when the selected session is gone', () => {
    expect(rendered()[2]).toMatch(/^> {5}301 /);
    const clamped = rendered({ viewState: { selectedKey: '9999', selectedIndex: 99 } });
    expect(clamped[15]).toMatch(/^> {5}404 /);
    expect(clamped.filter((line) => line.startsWith('>'))).toHaveLength(1);
  });

  it('says when there is no data yet', () => {
    const lines = rendered({ results: resultsIn('pending') });
    expect(lines[0]).toBe('waiting for the first activity snapshot…');
    expect(lines.slice(1).every((line) => line === '')).toBe(true);
  });

  it('says why the probe is unsupported and how to fix it', () => {
    expect(rendered({ results: resultsIn('unsupported') }).slice(0, 3)).toEqual([
      'activity unavailable: this role sees only its own sessions',
      'fix: GRANT pg_monitor TO the monitoring role',
      '',
    ]);
  });

  it('shows the last snapshot under a stale banner when the probe fails', () => {
    const lines = rendered({ results: resultsIn('error') });
    expect(lines[0]).toBe('activity failed: connection lost: server closed the connection unexpectedly (pg…');
    expect(lines[1]).toBe(`showing data from ${clockTime(staleAt)} (stale, 45s old)`);
    expect(lines[2]).toBe('14 sessions (10 clients) · 6 active · 3 idle in transaction · 3 waiting on locks');
    expect(pids(lines)).toEqual(defaultOrder);
  });

  it('fails without a last snapshot as a banner alone', () => {
    const lines = rendered({ results: resultsIn('ok', { activity: { status: 'error', error: { message: 'timeout', hint: undefined, sqlstate: '57014' }, since: staleAt, last: undefined } }) });
    expect(lines.filter((line) => line !== '')).toEqual(['activity failed: timeout']);
  });
});

describe('Activity screen at 200×50', () => {
  it('shows every column, ages and the full query text', () => {
    const lines = rendered({ width: 200, height: 50, tagged: [101], viewState: { selectedKey: '202' } });
    expect(lines.slice(0, 6)).toEqual([
      '14 sessions (10 clients) · 6 active · 3 idle in transaction · 3 waiting on locks · 4 past a threshold · 1 tagged',
      '      pid user      database  application client        state         wait             xact query▼ query text',
      '      301 etl       warehouse etl-loader  10.0.0.20     active        IO:DataFileRe… 40m00s 40m00s insert into facts select * from staging_facts where batch_id = 9001',
      " ●    101 alice     app       orders-api  10.0.0.11     idle in trans Client:Client… 21m00s 20m05s update orders set status = 'paid' where id = 42",
      '      102 bob       app       billing     10.0.0.12     idle in trans Client:Client…  7m30s  7m05s update orders set total = total + 1 where id = 7',
      '      302 analyst   warehouse psql        local         active                        6m40s  6m40s select customer_id, sum(total) from orders group by 1 order by 2 desc',
    ]);
    expect(lines).toContain('>     202 dave      app       reporting   10.0.0.14     active        Lock:relation   1m00s  1m00s select count(*) from orders');
    // Idle sessions have no query age (their last query is history); processes without a query say what they are.
    expect(lines).toContain('      303 web       app       web-1       10.0.0.31     idle          Client:Client…               select * from customers where id = $1');
    expect(lines).toContain('      403                     checkpoint…                             Activity:Chec…               [checkpointer]');
    expect(lines).toHaveLength(50);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('waiting for the first activity snapshot…');
    expect(rendered({ width: 200, height: 50, results: resultsIn('unsupported') }).slice(0, 2)).toEqual([
      'activity unavailable: this role sees only its own sessions',
      'fix: GRANT pg_monitor TO the monitoring role',
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[0]).toBe('activity failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
    expect(error[1]).toBe(`showing data from ${clockTime(staleAt)} (stale, 45s old)`);
    expect(pids(error)).toEqual(defaultOrder);
  });
});

describe('Activity model', () => {
  it('sorts by the longest query age by default, idle sessions and WAL senders last', () => {
    expect(modelPids()).toEqual(defaultOrder);
    expect(activityScreen.model!(screenProps('activity')).defaultSort).toEqual({ column: 'queryAge', descending: true });
  });

  it('sorts by the chosen column, and the screen follows', () => {
    const byPid = { sort: { column: 'pid', descending: false } };
    expect(modelPids({ viewState: byPid })).toEqual([...defaultOrder].sort((a, b) => a - b));
    expect(pids(rendered({ viewState: byPid }))).toEqual([...defaultOrder].sort((a, b) => a - b));
    expect(rendered({ viewState: byPid })[1]).toBe('     pid▲ user      database  application client        state         wait');
    // Sessions without a user (background workers) sort last in both directions.
    expect(modelPids({ viewState: { sort: { column: 'user', descending: true } } })).toEqual([203, 303, 304, 402, 404, 305, 301, 202, 201, 102, 302, 101, 401, 403]);
    expect(modelPids({ viewState: { sort: { column: 'user', descending: false } } })).toEqual([101, 302, 102, 201, 202, 301, 305, 404, 402, 203, 303, 304, 401, 403]);
  });

  it('filters with a regular expression over database, user, application, state and client', () => {
    expect(modelPids({ viewState: { filter: parseFilter('warehouse') } })).toEqual([301, 302]);
    expect(modelPids({ viewState: { filter: parseFilter('^10\\.0\\.0\\.1[1-3]$') } })).toEqual([101, 102, 201]);
    expect(modelPids({ viewState: { filter: parseFilter('orders-api') } })).toEqual([101, 203]);
    // The backend type of a process without an application counts as its application.
    expect(modelPids({ viewState: { filter: parseFilter('autovacuum') } })).toEqual([401]);
    const lines = rendered({ viewState: { filter: parseFilter('warehouse') } });
    expect(lines[0]).toBe('14 sessions (10 clients) · 6 active · 3 idle in transaction · 3 waiting on locks');
    expect(pids(lines)).toEqual([301, 302]);
  });

  it('filters with a negated regular expression', () => {
    expect(modelPids({ viewState: { filter: parseFilter('!idle') } })).toEqual([301, 302, 401, 201, 202, 203, 304, 402, 403, 404]);
    const lines = rendered({ width: 200, viewState: { filter: parseFilter('!idle') } });
    expect(lines[0]).toContain(' · filter !idle: 10 shown');
  });

  it('keeps every row when the filter is not a valid regular expression, and says so', () => {
    expect(modelPids({ viewState: { filter: parseFilter('(') } })).toEqual(defaultOrder);
    expect(rendered({ width: 200, viewState: { filter: parseFilter('(') } })[0]).toContain(' · filter (: not a valid regular expression');
  });

  it('says when the filter leaves nothing', () => {
    const lines = rendered({ viewState: { filter: parseFilter('nobody-matches-this') } });
    expect(lines[2]).toBe('  no session matches the filter');
  });

  it('designates sessions for actions by pid', () => {
    const props = screenProps('activity', { viewState: { selectedKey: '305' } });
    expect(selectedSessionPid(props)).toBe(305);
    const row = activityScreen.model!(props).rows.find((s) => s.pid === 305)!;
    expect(activityScreen.selectionOf!(row)).toEqual({ kind: 'session', pid: 305 });
    expect(selectedSessionPid(screenProps('activity', { results: resultsIn('pending') }))).toBeNull();
  });

  it('renders only the visible rows of 5,000 sessions within the frame', () => {
    const results = resultsIn('ok', { activity: okResult(largeActivity(5000)) });
    const props = screenProps('activity', { results, viewState: { selectedIndex: 2500 } });
    expect(activityScreen.model!(props).rows).toHaveLength(5000);
    const { lines } = renderScreen(activityScreen, props);
    expect(lines).toHaveLength(24);
    expect(lines[0]).toMatch(/^5,000 sessions \(4,990 clients\)/);
    expect(lines.filter((line) => line.startsWith('>'))).toHaveLength(1);
    expect(lines.every((line) => displayWidth(line) <= 80)).toBe(true);
  });
});

describe('session tones (DESIGN.md §5)', () => {
  const idle = (seconds: number) => session(1, { state: 'idle in transaction', stateSeconds: seconds });
  const active = (seconds: number) => session(1, { state: 'active', querySeconds: seconds });

  it('warns on idle in transaction past 5 minutes, critical past 15', () => {
    expect([idleInTransactionWarningSeconds, idleInTransactionCriticalSeconds]).toEqual([300, 900]);
    expect(sessionTone(idle(299))).toBeUndefined();
    expect(sessionTone(idle(300))).toBe('warning');
    expect(sessionTone(idle(899))).toBe('warning');
    expect(sessionTone(idle(900))).toBe('critical');
    expect(sessionTone(session(1, { state: 'idle in transaction (aborted)', stateSeconds: 900 }))).toBe('critical');
  });

  it('warns on active queries past 5 minutes, critical past 30, for client backends only', () => {
    expect([activeQueryWarningSeconds, activeQueryCriticalSeconds]).toEqual([300, 1800]);
    expect(sessionTone(active(299))).toBeUndefined();
    expect(sessionTone(active(300))).toBe('warning');
    expect(sessionTone(active(1800))).toBe('critical');
    expect(sessionTone(session(1, { state: 'active', querySeconds: 86_000, backendType: 'walsender' }))).toBeUndefined();
    expect(sessionTone(session(1, { state: 'idle', querySeconds: 86_000, stateSeconds: 86_000 }))).toBeUndefined();
  });
});
