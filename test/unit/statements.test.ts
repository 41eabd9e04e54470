import { describe, expect, it } from 'vitest';
import type { Row, ServerInfo } from '../../src/db/types.js';
import { statementsProbe, type StatementsSnapshot } from '../../src/probes/statements.js';
import type { RowSets } from '../../src/probes/types.js';

const t0 = new Date('2025-01-01T12:00:00Z');
const t1 = new Date('2025-01-01T12:00:10Z');
const bigQueryId = '-8921461235723482917';

function server(overrides: Partial<ServerInfo> = {}): ServerInfo {
  return {
    versionNum: 150000, version: '15.4', inRecovery: false, currentUser: 'watcher', database: 'app', superuser: false, monitor: true,
    extensions: { pg_stat_statements: '1.10' }, preloadLibraries: ['pg_stat_statements'], ...overrides,
  };
}

const extension: Row = { schema: 'public', version: '1.10', capacity: '5000' };

function statementRow(overrides: Record<string, unknown> = {}): Row {
  return {
    query_id: bigQueryId, user_id: 10, db_id: 16384, toplevel: true, user_name: 'app', database: 'app',
    query: 'select pg_sleep($1)', calls: '10', total_exec_ms: 2010.5, mean_exec_ms: 201.05, rows: '10',
    shared_blks_hit: '0', shared_blks_read: '0', temp_blks_read: '0', temp_blks_written: '0', total_count: '2',
    ...overrides,
  };
}

const fastRow = (overrides: Record<string, unknown> = {}): Row =>
  statementRow({ query_id: '42', query: 'select $1', calls: '1000', total_exec_ms: 12.5, mean_exec_ms: 0.0125, rows: '1000', shared_blks_hit: '5000', ...overrides });

function info(dealloc: string, statsReset: Date): Row {
  return { dealloc, stats_reset: statsReset };
}

function parse(rows: RowSets, previous: StatementsSnapshot | undefined, now: Date): StatementsSnapshot {
  return statementsProbe.parse({ extension: [extension], ...rows }, { server: server(), now, previous });
}

const resetAt = new Date('2025-01-01T00:00:00Z');

describe('statements probe: parse', () => {
  it('reads cumulative counters from int8 strings and keeps the 64-bit queryid as text', () => {
    const snapshot = parse({ statements: [statementRow(), fastRow()], info: [info('3', resetAt)] }, undefined, t0);
    expect(snapshot.statements[0]).toMatchObject({
      queryId: bigQueryId, userId: 10, dbId: 16384, toplevel: true, user: 'app', database: 'app', query: 'select pg_sleep($1)',
      calls: 10, totalExecMs: 2010.5, meanExecMs: 201.05, rows: 10, interval: null,
    });
    expect(snapshot).toMatchObject({ totalCount: 2, capacity: 5000, extensionVersion: '1.10', reset: false, intervalSeconds: null, dealloc: 3, deallocDelta: null, statsReset: resetAt });
  });

  it('computes per-statement deltas and rates against the previous snapshot', () => {
    const first = parse({ statements: [statementRow(), fastRow()], info: [info('3', resetAt)] }, undefined, t0);
    const second = parse({
      statements: [
        statementRow({ calls: '15', total_exec_ms: 3015.5, rows: '15', shared_blks_read: '8', temp_blks_written: '2' }),
        fastRow({ calls: '1500', total_exec_ms: 18.5, rows: '1500', shared_blks_hit: '5600' }),
      ],
      info: [info('5', resetAt)],
    }, first, t1);
    expect(second.reset).toBe(false);
    expect(second.intervalSeconds).toBe(10);
    expect(second.deallocDelta).toBe(2);
    expect(second.statements[0]?.interval).toEqual({
      calls: 5, callsPerSecond: 0.5, execMs: 1005, execMsPerSecond: 100.5, meanExecMs: 201, rows: 5,
      sharedBlksHit: 0, sharedBlksRead: 8, tempBlksRead: 0, tempBlksWritten: 2,
    });
    expect(second.statements[1]?.interval).toMatchObject({ calls: 500, callsPerSecond: 50, execMs: 6, rows: 500, sharedBlksHit: 600 });
  });

  it('gives a null interval mean when there were no calls in the interval', () => {
    const first = parse({ statements: [statementRow()] }, undefined, t0);
    const second = parse({ statements: [statementRow()] }, first, t1);
    expect(second.statements[0]?.interval).toMatchObject({ calls: 0, callsPerSecond: 0, meanExecMs: null });
  });

  it('matches entries by queryid, user, database and toplevel', () => {
    const first = parse({ statements: [statementRow({ total_count: '2' }), statementRow({ user_id: 11, calls: '100', total_count: '2' })] }, undefined, t0);
    const second = parse({
      statements: [statementRow({ calls: '12', total_count: '3' }), statementRow({ user_id: 11, calls: '103', total_count: '3' }), statementRow({ toplevel: false, calls: '1', total_count: '3' })],
    }, first, t1);
    expect(second.reset).toBe(false);
    expect(second.statements.map((s) => s.interval?.calls)).toEqual([2, 3, 1]);
  });

  it('starts a new entry from zero only when the previous snapshot held every entry', () => {
    const complete = parse({ statements: [fastRow({ total_count: '1' })] }, undefined, t0);
    const afterComplete = parse({ statements: [statementRow({ calls: '4', total_count: '2' }), fastRow({ total_count: '2' })] }, complete, t1);
    expect(afterComplete.statements[0]?.interval).toMatchObject({ calls: 4, meanExecMs: 2010.5 / 4 });

    // The previous snapshot kept 1 of 250 entries: a statement it lacks may just have been outside the top.
    const partial = parse({ statements: [fastRow({ total_count: '250' })] }, undefined, t0);
    const afterPartial = parse({ statements: [statementRow({ calls: '4', total_count: '250' }), fastRow({ total_count: '250' })] }, partial, t1);
    expect(afterPartial.statements[0]?.interval).toBeNull();
    expect(afterPartial.statements[1]?.interval).not.toBeNull();
  });

  it('detects a reset when calls fall for an entry, and reports no rates', () => {
    const first = parse({ statements: [statementRow(), fastRow()], info: [info('3', resetAt)] }, undefined, t0);
    const second = parse({ statements: [statementRow({ calls: '2', total_exec_ms: 402 }), fastRow({ calls: '1200' })], info: [info('3', resetAt)] }, first, t1);
    expect(second.reset).toBe(true);
    expect(second.statements.map((s) => s.interval)).toEqual([null, null]);
    expect(second.deallocDelta).toBeNull();
    // The interval after the reset has rates again.
    const third = parse({ statements: [statementRow({ calls: '3', total_exec_ms: 603 }), fastRow({ calls: '1300' })], info: [info('3', resetAt)] }, second, new Date(t1.getTime() + 10_000));
    expect(third.reset).toBe(false);
    expect(third.statements[0]?.interval?.calls).toBe(1);
  });

  it('detects a reset when stats_reset changes even though calls grew', () => {
    const first = parse({ statements: [statementRow()], info: [info('3', resetAt)] }, undefined, t0);
    const second = parse({ statements: [statementRow({ calls: '11' })], info: [info('0', new Date('2025-01-01T12:00:05Z'))] }, first, t1);
    expect(second.reset).toBe(true);
    expect(second.statements[0]?.interval).toBeNull();
  });

  it('works without pg_stat_statements_info (extension before 1.9): toplevel and stats_reset null', () => {
    const old = { ...extension, version: '1.7' };
    const rows = { extension: [old], statements: [statementRow({ toplevel: null })] };
    const first = statementsProbe.parse(rows, { server: server({ versionNum: 120000 }), now: t0, previous: undefined });
    const second = statementsProbe.parse({ extension: [old], statements: [statementRow({ toplevel: null, calls: '11' })] }, { server: server({ versionNum: 120000 }), now: t1, previous: first });
    expect(second).toMatchObject({ statsReset: null, dealloc: null, deallocDelta: null, reset: false });
    expect(second.statements[0]).toMatchObject({ toplevel: null, interval: { calls: 1 } });
  });

  it('reports an empty pg_stat_statements as 0 entries', () => {
    const snapshot = parse({ statements: [], info: [info('0', resetAt)] }, undefined, t0);
    expect(snapshot).toMatchObject({ statements: [], totalCount: 0 });
  });

  it('never matches entries whose queryid is hidden from this role', () => {
    const hidden = { query_id: null, query: '<insufficient privilege>' };
    const first = parse({ statements: [statementRow({ ...hidden, calls: '50' })] }, undefined, t0);
    const second = parse({ statements: [statementRow({ ...hidden, calls: '3' })] }, first, t1);
    expect(second.reset).toBe(false);
    expect(second.statements[0]).toMatchObject({ queryId: null, interval: null });
  });
});

describe('statements probe: SQL', () => {
  it('reads the extension schema and version, then selects columns by extension version', () => {
    const queries = statementsProbe.queries(server());
    expect(queries['extension']?.values).toEqual(['pg_stat_statements']);
    const v110 = statementsProbe.followUp?.({ extension: [{ schema: 'monitoring "x"', version: '1.10', capacity: null }] }, server());
    expect(v110?.['statements']?.text).toContain('from "monitoring ""x""".pg_stat_statements s');
    expect(v110?.['statements']?.text).toContain('order by s.total_exec_time desc');
    expect(v110?.['statements']?.text).toContain('limit 100');
    expect(v110?.['statements']?.text).toContain('s.toplevel');
    expect(v110?.['info']?.text).toContain('pg_stat_statements_info');
    const v17 = statementsProbe.followUp?.({ extension: [{ schema: 'public', version: '1.7', capacity: null }] }, server());
    expect(v17?.['statements']?.text).toContain('order by s.total_time desc');
    expect(v17?.['statements']?.text).toContain('null::boolean as toplevel');
    expect(v17?.['info']).toBeUndefined();
    const v18 = statementsProbe.followUp?.({ extension: [{ schema: 'public', version: '1.8', capacity: null }] }, server());
    expect(v18?.['statements']?.text).toContain('s.mean_exec_time');
    expect(v18?.['statements']?.text).not.toContain('s.toplevel');
  });
});

describe('statements probe: extension dropped after connecting', () => {
  it('queries the missing view so the server answers 42P01, which maps to "not installed"', () => {
    expect(statementsProbe.followUp?.({ extension: [] }, server())).toEqual({ statements: { text: 'select * from pg_stat_statements limit 0' } });
  });
});

describe('statements probe: unsupported', () => {
  it('asks for preload, restart and CREATE EXTENSION when neither is done', () => {
    const result = statementsProbe.unsupported?.(server({ extensions: {}, preloadLibraries: [] }));
    expect(result?.kind).toBe('extension');
    expect(result?.reason).toBe('pg_stat_statements is not installed in this database');
    expect(result?.fix).toBe('add pg_stat_statements to shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements;');
  });

  it('asks for preload, restart and CREATE EXTENSION when the preload list is unreadable', () => {
    expect(statementsProbe.unsupported?.(server({ extensions: {}, preloadLibraries: null }))?.fix).toMatch(/^add pg_stat_statements to shared_preload_libraries, restart/);
  });

  it('asks only for CREATE EXTENSION when it is already preloaded', () => {
    const result = statementsProbe.unsupported?.(server({ extensions: {}, preloadLibraries: ['auto_explain', 'pg_stat_statements'] }));
    expect(result?.fix).toMatch(/^CREATE EXTENSION pg_stat_statements;/);
    expect(result?.fix).not.toMatch(/restart/);
  });

  it('asks for the preload and a restart when installed but not preloaded', () => {
    const result = statementsProbe.unsupported?.(server({ preloadLibraries: ['auto_explain'] }));
    expect(result?.kind).toBe('config');
    expect(result?.fix).toBe('add pg_stat_statements to shared_preload_libraries and restart the server');
  });

  it('runs when installed and preloaded, or when the preload list is unreadable', () => {
    expect(statementsProbe.unsupported?.(server())).toBeUndefined();
    expect(statementsProbe.unsupported?.(server({ preloadLibraries: null }))).toBeUndefined();
  });

  it('maps SQLSTATE 55000 (not loaded via shared_preload_libraries) and 42P01 to unsupported', () => {
    expect(statementsProbe.unsupportedFor?.('55000', server({ preloadLibraries: null }))).toMatchObject({ kind: 'config', fix: expect.stringMatching(/shared_preload_libraries and restart/) });
    expect(statementsProbe.unsupportedFor?.('42P01', server({ extensions: {} }))?.kind).toBe('extension');
    expect(statementsProbe.unsupportedFor?.('57014', server())).toBeUndefined();
  });
});
