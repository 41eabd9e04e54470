import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import { queriesScreen, ratesBanner, statementKey } from '../../src/screens/Queries.js';
import { okResult, renderScreen, resetStatementsSnapshot, resultsIn, screenProps, staleAt, statementsSnapshot } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(queriesScreen, screenProps('queries', options)).text;
}

function queries(options: PropsOptions = {}): string[] {
  return queriesScreen.model!(screenProps('queries', options)).rows.map((statement) => statement.query.slice(0, 12));
}

const statements80 = [
  '312 statements tracked of 5,000 max · top 5 by total time · rates over 10s',
  ' query                           time/s▼  calls/s     mean   total rows/call hi…',
  '>update orders set status = $1…    900ms   30.0/s     30ms  45m00s         1 10…',
  ' select * from orders where cu…    450ms    150/s    3.0ms   1h00m         2 99…',
  ' select count(*) from events w…    240ms    1.2/s    200ms  16m40s         1 10…',
  ' insert into facts select * fr…      0ms   0.00/s        -  33m20s         -   -',
  ' <insufficient privilege>              -        -        -   500ms         -   -',
];

const resetResults = resultsIn('ok', { statements: okResult(resetStatementsSnapshot) });

describe('Queries screen at 80×24', () => {
  it('lists statements by execution time per second over the interval', () => {
    const lines = rendered();
    expect(lines.slice(0, 7)).toEqual(statements80);
    expect(lines.slice(7).every((line) => line === '')).toBe(true);
    expect(lines).toHaveLength(24);
  });

  it('shows a banner when the counters were reset, with no rates for that interval', () => {
    expect(rendered({ results: resetResults }).slice(0, 4)).toEqual([
      '312 statements tracked of 5,000 max · top 5 by total time · rates over 10s',
      'pg_stat_statements was reset: no rates for this interval, back with the next sn…',
      ' query                           time/s▼  calls/s     mean   total rows/call hi…',
      '>select * from orders where cu…        -        -        -   1h00m         -   -',
    ]);
  });

  it('renders the pending, unsupported (with the fix) and error states', () => {
    expect(rendered({ results: resultsIn('pending') }).filter((line) => line !== '')).toEqual(['waiting for the first statements snapshot…']);
    expect(rendered({ results: resultsIn('unsupported') }).filter((line) => line !== '')).toEqual([
      'statements unavailable: pg_stat_statements is not installed in this database',
      'fix: add pg_stat_statements to shared_preload_libraries, restart, then CREATE E…',
    ]);
    const error = rendered({ results: resultsIn('error') });
    expect(error.slice(0, 2)).toEqual([
      'statements failed: connection lost: server closed the connection unexpectedly (…',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
    ]);
    expect(error.slice(2, 9)).toEqual(statements80);
  });
});

describe('Queries screen at 200×50', () => {
  it('shows every column', () => {
    const lines = rendered({ width: 200, height: 50 });
    expect(lines.slice(0, 4)).toEqual([
      '312 statements tracked of 5,000 max · top 5 by total time · rates over 10s',
      ' query                                                                                                                  time/s▼  calls/s     mean   total rows/call   hit% temp blks user      database',
      '>update orders set status = $1 where id = $2                                                                              900ms   30.0/s     30ms  45m00s         1 100.0%         0 alice     app',
      ' select * from orders where customer_id = $1                                                                              450ms    150/s    3.0ms   1h00m         2  99.0%         0 web       app',
    ]);
    expect(lines).toContain(' select count(*) from events where created_at > $1                                                                        240ms    1.2/s    200ms  16m40s         1  10.0%     9,000 web       app');
    expect(lines).toHaveLength(50);
  });

  it('renders the pending, unsupported (with the whole fix), error and reset states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('waiting for the first statements snapshot…');
    expect(rendered({ width: 200, height: 50, results: resultsIn('unsupported') }).slice(0, 2)).toEqual([
      'statements unavailable: pg_stat_statements is not installed in this database',
      'fix: add pg_stat_statements to shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements;',
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[0]).toBe('statements failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
    expect(rendered({ width: 200, height: 50, results: resetResults })[1]).toBe('pg_stat_statements was reset: no rates for this interval, back with the next snapshot');
  });
});

describe('Queries model', () => {
  it('sorts by time per second by default, statements without rates last', () => {
    expect(queries()).toEqual(['update order', 'select * fro', 'select count', 'insert into ', '<insufficien']);
    expect(queriesScreen.model!(screenProps('queries')).defaultSort).toEqual({ column: 'timePerSecond', descending: true });
  });

  it('sorts by the chosen column', () => {
    expect(queries({ viewState: { sort: { column: 'callsPerSecond', descending: true } } })).toEqual(['select * fro', 'update order', 'select count', 'insert into ', '<insufficien']);
    expect(queries({ viewState: { sort: { column: 'total', descending: false } } })).toEqual(['<insufficien', 'select count', 'insert into ', 'update order', 'select * fro']);
    expect(rendered({ viewState: { sort: { column: 'callsPerSecond', descending: true } } })[2]).toBe('>select * from orders where cu…    450ms    150/s    3.0ms   1h00m         2 99…');
  });

  it('filters statements by database and user, and with a negated pattern', () => {
    expect(queries({ viewState: { filter: parseFilter('warehouse') } })).toEqual(['insert into ']);
    expect(queries({ viewState: { filter: parseFilter('!alice|postgres') } })).toEqual(['select * fro', 'select count', 'insert into ']);
    expect(rendered({ viewState: { filter: parseFilter('nobody') } })[2]).toBe(' no statement matches the filter');
  });

  it('designates statements by the key the detail pane uses, distinct for hidden statements', () => {
    const hidden = statementsSnapshot.statements[4]!;
    const twice = { ...statementsSnapshot, statements: [...statementsSnapshot.statements, { ...hidden }] };
    const model = queriesScreen.model!(screenProps('queries', { results: resultsIn('ok', { statements: okResult(twice) }) }));
    const keys = model.rows.map(model.rowKey);
    expect(new Set(keys).size).toBe(6);
    expect(keys.slice(-2)).toEqual(['null:10:16384:true', 'null:10:16384:true#1']);
    const top = model.rows[0]!;
    expect(queriesScreen.selectionOf!(top)).toEqual({ kind: 'statement', key: statementKey(top) });
    expect(statementKey(top)).toBe('7002:16385:16384:true');
  });

  it('explains missing rates', () => {
    expect(ratesBanner(statementsSnapshot)).toBeNull();
    expect(ratesBanner({ ...statementsSnapshot, intervalSeconds: null })).toEqual({ text: 'rates appear with the second snapshot', tone: 'muted' });
    expect(ratesBanner(resetStatementsSnapshot)?.tone).toBe('warning');
  });
});
