import { describe, expect, it } from 'vitest';
import { clockTime } from '../../src/components/ProbeStatus.js';
import {
  alertsPlaceholder, backupsPlaceholder, cacheHitFraction, oldestTransaction, overviewScreen, transactionsPerSecond,
} from '../../src/screens/Overview.js';
import {
  activitySnapshot, databasesSnapshot, okResult, renderScreen, resultIn, resultsIn, screenProps, staleAt, standbyReplication, standbyServerSnapshot,
} from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(overviewScreen, screenProps('overview', options)).text;
}

const placeholders = [
  'backups      not configured (arrives with the backup issue)',
  'alerts       none (alerting not configured yet)',
];

describe('Overview at 80×24', () => {
  it('shows one line per concern, with sparklines for connections, TPS and lag', () => {
    const lines = rendered();
    expect(lines.slice(0, 10)).toEqual([
      'role         primary, up 3d04h, PostgreSQL 15.4, timeline 1',
      'connections  11/97 used █▁▁▁▁▁▁▁▁▁ 11.3%, 86 left            █▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█',
      'tps          956/s (5.0/s rollbacks)                         ██▇▇▆▅▅▄▃▃▂▂▁▁▁▁▁▂▂',
      'cache hit    98.8% of blocks read from shared buffers',
      'replication  2 standbys, worst lag 512 MB / 2m05s (replica-… ▁▁▂▂▃▃▃▄▄▅▅▅▆▆▆▇▇██',
      'oldest xact  40m00s (pid 301, etl-loader)',
      'lock waits   3 waiting, 2 root blockers, longest wait 1m35s',
      'top query    900ms/s update orders set status = $1 where id = $2',
      ...placeholders,
    ]);
    expect(lines.slice(10).every((line) => line === '')).toBe(true);
    expect(lines).toHaveLength(24);
  });

  it('waits for each probe on its own line, without sparklines', () => {
    expect(rendered({ results: resultsIn('pending') }).slice(0, 11)).toEqual([
      'role         waiting for the first server snapshot…',
      'connections  waiting for the first connections snapshot…',
      'tps          waiting for the first databases snapshot…',
      'cache hit    waiting for the first databases snapshot…',
      'replication  waiting for the first replication snapshot…',
      'oldest xact  waiting for the first activity snapshot…',
      'lock waits   waiting for the first locks snapshot…',
      'top query    waiting for the first statements snapshot…',
      ...placeholders,
      '',
    ]);
  });

  it('says which probes are unavailable, then their fixes as far as room allows', () => {
    const lines = rendered({ results: resultsIn('unsupported') });
    expect(lines.slice(0, 8)).toEqual([
      'role         unavailable: this role may not read pg_control_system()',
      'connections  unavailable: this role may not read the connection settings',
      'tps          unavailable: this role may not read pg_stat_database',
      'cache hit    unavailable: this role may not read pg_stat_database',
      'replication  unavailable: this role may not see the WAL senders',
      'oldest xact  unavailable: this role sees only its own sessions',
      'lock waits   unavailable: pg_blocking_pids() needs PostgreSQL 9.6',
      'top query    unavailable: pg_stat_statements is not installed in this database',
    ]);
    expect(lines.slice(10)).toEqual([
      '',
      'server unavailable: this role may not read pg_control_system()',
      'fix: GRANT pg_monitor TO the monitoring role',
      'connections unavailable: this role may not read the connection settings',
      'fix: GRANT pg_monitor TO the monitoring role',
      'databases unavailable: this role may not read pg_stat_database',
      'fix: GRANT pg_monitor TO the monitoring role',
      'replication unavailable: this role may not see the WAL senders',
      'fix: GRANT pg_monitor TO the monitoring role',
      'activity unavailable: this role sees only its own sessions',
      'fix: GRANT pg_monitor TO the monitoring role',
      'locks unavailable: pg_blocking_pids() needs PostgreSQL 9.6',
      'fix: upgrade the server',
      '1 more probe is unavailable: see their views',
    ]);
  });

  it('marks stale figures and states a shared failure once', () => {
    const lines = rendered({ results: resultsIn('error') });
    expect(lines.slice(0, 13)).toEqual([
      'role         (stale) primary, up 3d04h, PostgreSQL 15.4, timeline 1',
      'connections  (stale) 11/97 used █▁▁▁▁▁▁▁▁▁ 11.3%, 86 left    █▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█',
      'tps          (stale) 956/s (5.0/s rollbacks)                 ██▇▇▆▅▅▄▃▃▂▂▁▁▁▁▁▂▂',
      'cache hit    (stale) 98.8% of blocks read from shared buffers',
      'replication  (stale) 2 standbys, worst lag 512 MB / 2m05s (… ▁▁▂▂▃▃▃▄▄▅▅▅▆▆▆▇▇██',
      'oldest xact  (stale) 40m00s (pid 301, etl-loader)',
      'lock waits   (stale) 3 waiting, 2 root blockers, longest wait 1m35s',
      'top query    (stale) 900ms/s update orders set status = $1 where id = $2',
      ...placeholders,
      '',
      '7 probes failed: connection lost: server closed the connection unexpectedly (pg…',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
    ]);
  });

  it('keeps one failing probe to its own line', () => {
    const results = resultsIn('ok', { locks: { status: 'error', error: { message: 'canceling statement due to statement timeout', hint: undefined, sqlstate: '57014' }, since: staleAt, last: undefined } });
    const lines = rendered({ results });
    expect(lines[6]).toBe('lock waits   failed: canceling statement due to statement timeout');
    expect(lines[5]).toBe('oldest xact  40m00s (pid 301, etl-loader)');
    expect(lines.slice(10, 12)).toEqual(['', 'locks failed: canceling statement due to statement timeout']);
  });
});

describe('Overview at 200×50', () => {
  it('widens the sparklines and the bar', () => {
    const lines = rendered({ width: 200, height: 50 });
    expect(lines.slice(0, 5)).toEqual([
      'role         primary, up 3d04h, PostgreSQL 15.4, timeline 1',
      'connections  11/97 used ██▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁ 11.3%, 86 left                                                                                 ▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█▁▂▄▅▇█',
      'tps          956/s (5.0/s rollbacks)                                                                                                        ▅▅▆▆▇▇█████▇▇▆▆▅▄▄▃▂▂▁▁▁▁▁▁▂▂▃▄▄▅▆▆▇▇█████▇▇▇▆▅▅▄▃▃▂▂▁▁▁▁▁▂▂',
      'cache hit    98.8% of blocks read from shared buffers',
      'replication  2 standbys, worst lag 512 MB / 2m05s (replica-2), archiving failing                                                            ▁▁▁▁▁▂▂▂▂▂▂▂▂▃▃▃▃▃▃▃▃▃▄▄▄▄▄▄▄▄▅▅▅▅▅▅▅▅▆▆▆▆▆▆▆▆▆▇▇▇▇▇▇▇▇█████',
    ]);
    expect(lines.slice(8, 10)).toEqual(placeholders);
    expect(lines).toHaveLength(50);
  });

  it('shows a standby: its receiver and replay delay', () => {
    const results = resultsIn('ok', { server: okResult(standbyServerSnapshot), replication: okResult(standbyReplication) });
    const lines = rendered({ width: 200, height: 50, results });
    expect(lines[0]).toBe('role         standby, up 5m00s, PostgreSQL 15.4, timeline 1');
    expect(lines[4]).toMatch(/^replication {2}standby, receiver streaming, replay 16\.0 MB \/ 42s behind {50,}▁/);
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('role         waiting for the first server snapshot…');
    const unsupported = rendered({ width: 200, height: 50, results: resultsIn('unsupported') });
    // With room for all, every fix is shown.
    expect(unsupported.filter((line) => line !== '').slice(-2)).toEqual([
      'statements unavailable: pg_stat_statements is not installed in this database',
      'fix: add pg_stat_statements to shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements;',
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[11]).toBe('7 probes failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
  });
});

describe('Overview figures', () => {
  it('sums transactions over the databases, null before rates exist', () => {
    expect(transactionsPerSecond(databasesSnapshot)).toBe(955.5);
    const first = { ...databasesSnapshot, databases: databasesSnapshot.databases.map((db) => ({ ...db, commitsPerSecond: null, rollbacksPerSecond: null })) };
    expect(transactionsPerSecond(first)).toBeNull();
    expect(rendered({ results: resultsIn('ok', { databases: okResult(first) }) })[2]).toMatch(/^tps {10}rates appear with the second snapshot {11}█/);
  });

  it('computes the cache hit ratio over all databases', () => {
    expect(cacheHitFraction(databasesSnapshot)).toBeCloseTo(10_080_990_000 / 10_201_000_000, 10);
  });

  it('finds the oldest open transaction', () => {
    expect(oldestTransaction(activitySnapshot)).toEqual({ pid: 301, seconds: 2400, application: 'etl-loader' });
    expect(oldestTransaction({ sessions: [], ownSessions: [] })).toBeUndefined();
  });

  it('keeps the places where backups and alerts will appear', () => {
    expect(backupsPlaceholder).toBe('not configured (arrives with the backup issue)');
    expect(alertsPlaceholder).toBe('none (alerting not configured yet)');
    expect(overviewScreen.model).toBeUndefined();
    expect(resultIn('statements', 'ok').status).toBe('ok');
  });
});
