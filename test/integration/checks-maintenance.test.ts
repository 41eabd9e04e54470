// The maintenance checks against real situations on a private cluster: failed concurrent index
// builds, dead rows autovacuum may not touch, autovacuum switched off, a heavily updated table,
// a statement that got slow, and transaction and multixact IDs consumed past lowered thresholds.
// Private, because VACUUM FREEZE and CREATE INDEX CONCURRENTLY wait for (or are defeated by) the
// oldest transaction in the server, and because every table of the database is evaluated.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multixactWraparoundCheck, xidWraparoundCheck } from '../../src/checks/databases.js';
import { slowQueriesCheck } from '../../src/checks/statements.js';
import { autovacuumCheck, bloatCheck, invalidIndexesCheck } from '../../src/checks/tables.js';
import { CheckWatch, findingFor, has, severities } from '../support/checks.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { closeAll, openSession } from '../support/sessions.js';

const MB = 1024 ** 2;
const TB = 1024 ** 4;
let cluster: TestCluster;
let watch: CheckWatch;
const checks = [invalidIndexesCheck, autovacuumCheck, bloatCheck, slowQueriesCheck, xidWraparoundCheck, multixactWraparoundCheck];

beforeAll(async () => {
  cluster = await createPrimary({ name: 'checks-maint', preload: ['pg_stat_statements'] });
  await cluster.sql('create extension pg_stat_statements; create extension pgstattuple');
  watch = new CheckWatch(cluster.dsn(), checks);
});

afterAll(async () => {
  await closeAll();
  await watch.close();
  await destroyAll();
});

/** The error a statement ends with (it must fail). */
async function failure(sql: string): Promise<{ code?: string; message: string }> {
  try {
    await cluster.sql(sql);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error(`expected this to fail: ${sql}`);
}

describe('maintenance checks on real tables', () => {
  it('invalid indexes: a failed unique build is critical, a failed plain build a warning; ok once dropped', async () => {
    await cluster.sql('create table dup_keys (id int, v int); insert into dup_keys select i, i % 10 from generate_series(1, 100) i');
    expect(await failure('create unique index concurrently dup_keys_v_key on dup_keys (v)')).toMatchObject({ code: '23505' });
    expect(await failure('create index concurrently dup_keys_ratio_idx on dup_keys ((100 / (v - 5)))')).toMatchObject({ code: '22012' });

    const findings = await watch.evaluate(invalidIndexesCheck);
    expect(severities(findings).sort()).toEqual([['critical', 'index public.dup_keys_v_key'], ['warning', 'index public.dup_keys_ratio_idx']]);
    const unique = findingFor(findings, 'index public.dup_keys_v_key');
    expect(unique).toMatchObject({ checkId: 'invalid-indexes', value: 0, unit: 'bytes', runbook: 'docs/alerts.md#invalid-indexes' });
    expect(unique.message).toBe('unique index public.dup_keys_v_key on public.dup_keys is invalid (0 B, not being built): uniqueness is not enforced');
    expect(unique.context.details).toEqual({ database: 'postgres', definition: 'CREATE UNIQUE INDEX dup_keys_v_key ON public.dup_keys USING btree (v)' });
    const plain = findingFor(findings, 'index public.dup_keys_ratio_idx');
    expect(plain.message).toBe('index public.dup_keys_ratio_idx on public.dup_keys is invalid (0 B, not being built)');

    await cluster.sql('drop index concurrently dup_keys_v_key');
    await cluster.sql('drop index concurrently dup_keys_ratio_idx');
    expect(await watch.evaluate(invalidIndexesCheck)).toEqual([expect.objectContaining({ severity: 'ok', subject: 'cluster', message: 'no invalid index in postgres' })]);
    await cluster.sql('drop table dup_keys');
  });

  it('autovacuum: dead rows in a table autovacuum may not touch warn, never vacuumed or vacuumed too long ago; ok after VACUUM', async () => {
    await cluster.sql('create table churn (id int primary key, v int) with (autovacuum_enabled = false); insert into churn select i, i from generate_series(1, 20000) i');
    await cluster.sql('delete from churn where id > 5000');
    const subject = 'table public.churn';
    // The session that deleted has ended, so its counts reach the statistics shortly.
    const never = findingFor(await watch.until(autovacuumCheck, {}, 'the dead rows counted', (f) => has(f, subject, 'warning') !== undefined), subject);
    expect(never).toMatchObject({ checkId: 'autovacuum', value: null, threshold: 86_400, unit: 'seconds' });
    expect(never.message).toBe('table public.churn: 15,000 dead rows (75.0%), no vacuum since the statistics were reset, autovacuum_enabled = false on this table (warning ≥ 1d00h)');
    expect(never.context.details).toEqual({ database: 'postgres', deadRows: 15_000, liveRows: 5000, autovacuumEnabled: 'no' });

    // Vacuumed now, then churned again: overdue once the lowered interval has passed.
    await cluster.sql('vacuum churn');
    await cluster.sql('insert into churn select i, i from generate_series(5001, 10000) i');
    await cluster.sql('delete from churn where id > 1000');
    const lowered = { overdueSeconds: 1, deadRows: 5000, deadFraction: 0.5 };
    const overdue = findingFor(await watch.until(autovacuumCheck, lowered, 'the vacuum 1 s old', (f) => has(f, subject, 'warning') !== undefined), subject);
    expect(overdue).toMatchObject({ threshold: 1, warningThreshold: 1 });
    expect(overdue.value).toBeGreaterThanOrEqual(1);
    expect(overdue.message).toMatch(/^table public\.churn: 9,000 dead rows \(90\.0%\), last vacuum \S+ ago, autovacuum_enabled = false on this table \(warning ≥ 1\.0s\)$/);

    await cluster.sql('vacuum churn');
    const clean = await watch.until(autovacuumCheck, lowered, 'the dead rows gone', (f) => f[0]?.severity === 'ok');
    expect(clean).toEqual([expect.objectContaining({ severity: 'ok', subject: 'cluster' })]);
    expect(clean[0]?.message).toMatch(/^autovacuum on; no overdue table among \d+ in postgres$/);
    await cluster.sql('drop table churn');
  });

  it('autovacuum off for the whole server (ALTER SYSTEM + reload) is critical; ok once it is back on', async () => {
    const setting = async (): Promise<unknown> => (await cluster.sql('show autovacuum'))[0]?.['autovacuum'];
    try {
      await cluster.sql('alter system set autovacuum = off');
      await cluster.sql('select pg_reload_conf()');
      await waitFor('autovacuum off', async () => (await setting()) === 'off');
      // The server probe rereads pg_settings once a minute: a watch started now reads them at once.
      const fresh = new CheckWatch(cluster.dsn(), [autovacuumCheck]);
      try {
        const off = await fresh.evaluate(autovacuumCheck);
        expect(off).toEqual([expect.objectContaining({
          checkId: 'autovacuum', severity: 'critical', subject: 'cluster',
          message: 'autovacuum is off for the whole server: dead rows accumulate and wraparound protection depends on manual vacuums',
        })]);
      } finally {
        await fresh.close();
      }
    } finally {
      await cluster.sql('alter system reset autovacuum');
      await cluster.sql('select pg_reload_conf()');
    }
    await waitFor('autovacuum on', async () => (await setting()) === 'on');
    const fresh = new CheckWatch(cluster.dsn(), [autovacuumCheck]);
    try {
      expect(severities(await fresh.evaluate(autovacuumCheck))).toEqual([['ok', 'cluster']]);
    } finally {
      await fresh.close();
    }
  });

  it('bloat: a heavily updated table, measured with pgstattuple, warns and then is critical over lowered thresholds; ok after VACUUM FULL', async () => {
    await cluster.sql(`create table churned (id int primary key, pad text) with (autovacuum_enabled = false);
                       insert into churned select i, repeat('a', 200) from generate_series(1, 10000) i`);
    for (const letter of ['b', 'c', 'd']) await cluster.sql(`update churned set pad = repeat('${letter}', 200)`);
    await cluster.sql('vacuum analyze churned');
    const subject = 'table public.churned';
    const lowered = { warningBytes: MB, warningFraction: 0.3, criticalBytes: TB, criticalFraction: 0.5 };
    const warned = findingFor(await watch.evaluate(bloatCheck, lowered), subject);
    expect(warned).toMatchObject({ checkId: 'bloat', severity: 'warning', threshold: MB, warningThreshold: MB, unit: 'bytes' });
    // Three of the four row versions are free space after the VACUUM.
    expect(warned.value).toBeGreaterThan(4 * MB);
    expect(warned.context.details).toMatchObject({ database: 'postgres', confirmed: 'yes' });
    expect(warned.context.details?.['fraction']).toBeGreaterThan(0.6);
    expect(warned.message).toMatch(/^table public\.churned: \d+(\.\d+)? MB reclaimable, \d+\.\d% of \d+(\.\d+)? MB \(measured with pgstattuple\) \(warning ≥ 1\.00 MB and 30\.0%\)$/);

    const critical = findingFor(await watch.evaluate(bloatCheck, { ...lowered, criticalBytes: 4 * MB }), subject);
    expect(critical).toMatchObject({ severity: 'critical', threshold: 4 * MB, warningThreshold: MB });
    expect(critical.message).toMatch(/\(measured with pgstattuple\) \(critical ≥ 4\.00 MB and 50\.0%\)$/);

    await cluster.sql('vacuum full churned');
    await cluster.sql('analyze churned');
    const after = await watch.evaluate(bloatCheck, lowered);
    expect(after).toEqual([expect.objectContaining({ severity: 'ok', subject: 'cluster', message: 'no table or index in postgres with 1.00 MB and 30.0% reclaimable' })]);
    await cluster.sql('drop table churned');
  });

  it('slow queries: a statement slower than the lowered mean warns, then slow and several times its baseline is critical; ok once it stops', async () => {
    const client: pg.Client = await openSession(cluster.dsn(), 'checks-statements');
    const sleep = async (seconds: number, times: number): Promise<void> => {
      for (let i = 0; i < times; i++) await client.query(`select pg_sleep(${seconds})`);
    };
    const lowered = { minCalls: 3, warningMeanMs: 50, regressionMinMeanMs: 10, criticalMeanMs: 150, warningRegression: 2, criticalRegression: 3 };
    await sleep(0.01, 3);
    expect(await watch.evaluate(slowQueriesCheck, lowered)).toEqual([expect.objectContaining({ severity: 'ok', message: 'first reading: statements are compared from the next evaluation' })]);

    await sleep(0.06, 3);
    const slow = await watch.evaluate(slowQueriesCheck, lowered);
    expect(slow).toHaveLength(1);
    const warned = slow[0]!;
    expect(warned).toMatchObject({ checkId: 'slow-queries', severity: 'warning', threshold: 50, warningThreshold: 50, unit: 'ms' });
    expect(warned.value).toBeGreaterThanOrEqual(60);
    expect(warned.value).toBeLessThan(150);
    expect(warned.context.details).toMatchObject({ query: 'select pg_sleep($1)', calls: 3, user: 'postgres', database: 'postgres' });
    expect(warned.context.details?.['baselineMs']).toBeGreaterThanOrEqual(10);
    expect(warned.context.details?.['baselineMs']).toBeLessThan(50);
    expect(warned.message).toMatch(/^statement -?\d+ \(postgres on postgres\): mean \d+ms over 3 calls, \d+\.\d× its baseline \d+ms \(warning ≥ 50ms with ≥ 3 calls\)$/);

    await sleep(0.2, 3);
    const regressed = await watch.evaluate(slowQueriesCheck, lowered);
    expect(regressed).toHaveLength(1);
    expect(regressed[0]).toMatchObject({ severity: 'critical', subject: warned.subject, threshold: 150, warningThreshold: 50 });
    expect(regressed[0]?.value).toBeGreaterThanOrEqual(200);
    expect(regressed[0]?.message).toMatch(/: mean \d+ms over 3 calls, \d+\.\d× its baseline \d+ms \(critical ≥ 150ms and ≥ 3× baseline\)$/);

    expect(await watch.evaluate(slowQueriesCheck, lowered)).toEqual([expect.objectContaining({ severity: 'ok', message: expect.stringMatching(/^no slow or regressed statement among the top \d+$/) as unknown })]);
  });

  it('XID and multixact wraparound: IDs consumed past lowered thresholds warn, then are critical; ok after VACUUM FREEZE of every database', async () => {
    const databases = await watch.evaluate(xidWraparoundCheck);
    const ages = watch.snapshot('databases').databases;
    const xidBase = Math.max(...ages.map((d) => d.xidAge ?? 0));
    const mxidBase = Math.max(...ages.map((d) => d.multixactAge ?? 0));
    expect(severities(databases)).toEqual([['ok', 'cluster']]);
    // Fractions of 2^31 a few hundred IDs above what this fresh cluster has used.
    const xid = { warningFraction: (xidBase + 300) / 2 ** 31, criticalFraction: (xidBase + 700) / 2 ** 31 };
    const mxid = { warningFraction: (mxidBase + 100) / 2 ** 31, criticalFraction: (mxidBase + 250) / 2 ** 31 };
    const consumeXids = (n: number): Promise<unknown> => cluster.sql(`do $$ begin for i in 1..${n} loop perform txid_current(); commit; end loop; end $$`);
    // A multixact per transaction: a row share-locked by one open transaction and, in turn, by each new one.
    await cluster.sql('create table shared_row (id int primary key); insert into shared_row values (1)');
    const holder = await openSession(cluster.dsn(), 'checks-share-holder');
    await holder.query('begin; select * from shared_row for share');
    const consumeMultixacts = (n: number): Promise<unknown> => cluster.sql(`do $$ begin for i in 1..${n} loop perform 1 from shared_row for share; commit; end loop; end $$`);

    await consumeXids(400);
    const xidWarned = await watch.evaluate(xidWraparoundCheck, xid);
    // The counter is cluster-wide: every database ages, template0 included.
    expect(severities(xidWarned).sort()).toEqual([['warning', 'database postgres'], ['warning', 'database template0'], ['warning', 'database template1']]);
    const postgres = findingFor(xidWarned, 'database postgres');
    expect(postgres).toMatchObject({ checkId: 'xid-wraparound', threshold: xid.warningFraction, warningThreshold: xid.warningFraction, unit: 'fraction' });
    expect(postgres.context.details?.['age']).toBeGreaterThanOrEqual(xidBase + 400);
    expect(postgres.value).toBe((postgres.context.details?.['age'] as number) / 2 ** 31);
    expect(postgres.message).toMatch(/^database postgres: XID age [\d,]+ is 0\.0% of the wraparound limit \(warning ≥ 0\.0%\)$/);
    expect(findingFor(xidWarned, 'database template0').context.details?.['allowConnections']).toBe('no');
    await consumeXids(400);
    expect(severities(await watch.evaluate(xidWraparoundCheck, xid)).sort()).toEqual([['critical', 'database postgres'], ['critical', 'database template0'], ['critical', 'database template1']]);

    await consumeMultixacts(150);
    const mxidWarned = await watch.evaluate(multixactWraparoundCheck, mxid);
    expect(severities(mxidWarned).sort()).toEqual([['warning', 'database postgres'], ['warning', 'database template0'], ['warning', 'database template1']]);
    expect(findingFor(mxidWarned, 'database postgres').context.details?.['age']).toBeGreaterThanOrEqual(mxidBase + 150);
    expect(findingFor(mxidWarned, 'database postgres').message).toMatch(/^database postgres: multixact age [\d,]+ is 0\.0% of the wraparound limit \(warning ≥ 0\.0%\)$/);
    await consumeMultixacts(150);
    expect(severities(await watch.evaluate(multixactWraparoundCheck, mxid)).sort()).toEqual([['critical', 'database postgres'], ['critical', 'database template0'], ['critical', 'database template1']]);

    // The end: the share lock released, every database frozen (template0 opened for it just this once).
    await holder.query('commit');
    await cluster.sql('alter database template0 allow_connections true');
    try {
      for (const database of ['postgres', 'template0', 'template1']) await cluster.sql('vacuum freeze', database);
    } finally {
      await cluster.sql('alter database template0 allow_connections false');
    }
    expect(severities(await watch.evaluate(xidWraparoundCheck, xid))).toEqual([['ok', 'cluster']]);
    expect(severities(await watch.evaluate(multixactWraparoundCheck, mxid))).toEqual([['ok', 'cluster']]);
  });
});
