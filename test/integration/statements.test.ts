import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgNode } from '../../src/db/node.js';
import { statementsProbe, type Statement, type StatementsSnapshot } from '../../src/probes/statements.js';
import type { ProbeResult, Stamped } from '../../src/probes/types.js';
import { createPrimary, destroyAll, type TestCluster } from '../support/cluster.js';
import { closeNodes, nodeFor, probeResult } from '../support/probe.js';
import { closeAll, openSession } from '../support/sessions.js';

const sharedDsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
let primary: TestCluster;
let node: PgNode;
let client: pg.Client;

beforeAll(async () => {
  primary = await createPrimary({ name: 'stmts-probe', preload: ['pg_stat_statements'] });
  await primary.sql('create extension pg_stat_statements; create role stmts_watcher login; grant pg_monitor to stmts_watcher; create role stmts_plain login');
  node = nodeFor(primary.dsn());
  client = await openSession(primary.dsn(), 'stmts-test');
});

afterAll(async () => {
  await closeAll();
  await closeNodes();
  await destroyAll();
});

async function stamped(previous?: Stamped<StatementsSnapshot>, on: PgNode = node): Promise<Stamped<StatementsSnapshot>> {
  const result = await probeResult(statementsProbe, '', previous === undefined ? { node: on } : { node: on, previous });
  if (result.status !== 'ok') throw new Error(`statements probe returned ${JSON.stringify(result)}`);
  return { snapshot: result.snapshot, at: result.at };
}

function slowOf(snapshot: StatementsSnapshot): Statement | undefined {
  return snapshot.statements.find((s) => s.query === 'select pg_sleep($1)');
}

function fastOf(snapshot: StatementsSnapshot): Statement | undefined {
  return snapshot.statements.find((s) => s.query === 'select $1::int + $2 as stmts_fast');
}

async function runSlow(times: number): Promise<void> {
  for (let i = 0; i < times; i++) await client.query('select pg_sleep(0.2)');
}

async function runFast(times: number): Promise<void> {
  for (let i = 0; i < times; i++) await client.query('select $1::int + 1 as stmts_fast', [i]);
}

describe('statements probe', () => {
  it('measures calls, rates and the interval mean between two snapshots without resetting', async () => {
    // Both statements exist before the first snapshot, so the deltas are real differences.
    await runSlow(1);
    await runFast(1);
    const first = await stamped();
    expect(slowOf(first.snapshot)?.calls).toBe(1);
    expect(first.snapshot.statements.every((s) => s.interval === null)).toBe(true);

    await runSlow(5);
    await runFast(300);
    const second = await stamped(first);
    const { snapshot } = second;
    expect(snapshot.reset).toBe(false);
    expect(snapshot.statsReset).toEqual(first.snapshot.statsReset);
    expect(snapshot.deallocDelta).toBe(0);
    const seconds = snapshot.intervalSeconds ?? 0;
    expect(seconds).toBeGreaterThanOrEqual(1);

    const slow = slowOf(snapshot);
    expect(slow).toMatchObject({ calls: 6, user: 'postgres', database: 'postgres', toplevel: true });
    expect(slow?.queryId).toMatch(/^-?\d+$/);
    expect(slow?.interval?.calls).toBe(5);
    expect(slow?.interval?.meanExecMs).toBeGreaterThanOrEqual(200);
    expect(slow?.interval?.meanExecMs).toBeLessThan(1000);
    expect(slow?.interval?.callsPerSecond).toBeCloseTo(5 / seconds, 6);
    expect(slow?.interval?.execMsPerSecond).toBeGreaterThanOrEqual(1000 / seconds);

    const fast = fastOf(snapshot);
    expect(fast?.calls).toBe(301);
    expect(fast?.interval).toMatchObject({ calls: 300, rows: 300 });
    expect(fast?.interval?.callsPerSecond).toBeCloseTo(300 / seconds, 6);
    expect(fast?.interval?.meanExecMs).toBeLessThan(50);
    // Ordered by total time on the server: the sleeps come before the additions.
    expect(snapshot.statements.indexOf(slow!)).toBeLessThan(snapshot.statements.indexOf(fast!));
  });

  it('reports a reset when one entry is reset by hand (its calls fall) and stats_reset did not change', async () => {
    const before = await stamped();
    const slow = slowOf(before.snapshot);
    expect(slow?.calls).toBeGreaterThanOrEqual(6);
    await client.query('select pg_stat_statements_reset($1::oid, $2::oid, $3::bigint)', [slow?.userId, slow?.dbId, slow?.queryId]);
    await runSlow(1);
    const after = await stamped(before);
    expect(slowOf(after.snapshot)?.calls).toBe(1);
    expect(after.snapshot.statsReset).toEqual(before.snapshot.statsReset);
    expect(after.snapshot.reset).toBe(true);
    expect(after.snapshot.statements.every((s) => s.interval === null)).toBe(true);
  });

  it('reports a reset after pg_stat_statements_reset(), then rates again on the next interval', async () => {
    const before = await stamped();
    await client.query('select pg_stat_statements_reset()');
    await runFast(10);
    const after = await stamped(before);
    expect(after.snapshot.reset).toBe(true);
    expect(after.snapshot.statsReset?.getTime()).toBeGreaterThan(before.snapshot.statsReset?.getTime() ?? Infinity);
    expect(after.snapshot.deallocDelta).toBeNull();
    expect(after.snapshot.statements.every((s) => s.interval === null)).toBe(true);

    await runFast(20);
    const next = await stamped(after);
    expect(next.snapshot.reset).toBe(false);
    expect(fastOf(next.snapshot)?.interval?.calls).toBe(20);
  });

  it('keeps the top 100 by total time and says how many entries exist', async () => {
    // Each column count is a distinct statement.
    for (let n = 1; n <= 120; n++) await client.query(`select ${Array.from({ length: n }, () => '1').join(', ')}`);
    const { snapshot } = await stamped();
    expect(snapshot.statements).toHaveLength(100);
    expect(snapshot.totalCount).toBeGreaterThanOrEqual(120);
    const totals = snapshot.statements.map((s) => s.totalExecMs);
    expect(totals).toEqual([...totals].sort((a, b) => b - a));
    expect(snapshot.capacity).toBe(5000);
  });

  it('runs as a role that is only a member of pg_monitor and sees other users\' statements', async () => {
    await runSlow(1);
    const { snapshot } = await stamped(undefined, nodeFor(primary.dsn('postgres', 'stmts_watcher')));
    const slow = slowOf(snapshot);
    expect(slow?.user).toBe('postgres');
    expect(slow?.queryId).not.toBeNull();
  });

  it('is unsupported with the preload fix on a server without the extension', async () => {
    const result = await probeResult(statementsProbe, sharedDsn);
    expect(result.status).toBe('unsupported');
    const unsupported = (result as Extract<ProbeResult<StatementsSnapshot>, { status: 'unsupported' }>).unsupported;
    expect(unsupported.kind).toBe('extension');
    expect(unsupported.reason).toBe('pg_stat_statements is not installed in this database');
    expect(unsupported.fix).toMatch(/shared_preload_libraries, restart, then CREATE EXTENSION pg_stat_statements;/);
  });

  it('is unsupported with only CREATE EXTENSION to do when the extension is dropped while preloaded', async () => {
    // The node's cached ServerInfo still lists the extension, so the server's 42P01 must tell.
    expect((await node.serverInfo()).extensions).toHaveProperty('pg_stat_statements');
    await primary.sql('drop extension pg_stat_statements');
    const dropped = await probeResult(statementsProbe, '', { node });
    expect(dropped).toMatchObject({ status: 'unsupported', unsupported: { kind: 'extension', fix: expect.stringMatching(/^CREATE EXTENSION pg_stat_statements;/) } });
    expect(dropped.status === 'unsupported' && dropped.unsupported.fix).not.toMatch(/restart/);
    await primary.sql('create extension pg_stat_statements');
  });

  it('is unsupported when installed but no longer preloaded, from ServerInfo or from SQLSTATE 55000', async () => {
    // postgresql.auto.conf wins over the harness's include file; an empty list would be written as '""'.
    await primary.sql("alter system set shared_preload_libraries = 'plpgsql'");
    await primary.restart();

    const superuser = await probeResult(statementsProbe, '', { node: nodeFor(primary.dsn()) });
    expect(superuser).toMatchObject({ status: 'unsupported', unsupported: { kind: 'config', fix: 'add pg_stat_statements to shared_preload_libraries and restart the server' } });

    // This role may not read shared_preload_libraries, so only the server's error can tell.
    const plainNode = nodeFor(primary.dsn('postgres', 'stmts_plain'));
    expect((await plainNode.serverInfo()).preloadLibraries).toBeNull();
    const plain = await probeResult(statementsProbe, '', { node: plainNode });
    expect(plain).toMatchObject({ status: 'unsupported', unsupported: { kind: 'config', reason: expect.stringMatching(/shared_preload_libraries/) } });
  });
});
