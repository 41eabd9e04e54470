// Runs on a private cluster: VACUUM and CREATE INDEX CONCURRENTLY both wait on (or are defeated
// by) the oldest transaction in the server, which on the shared server belongs to other tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { tablesProbe, type IndexStats, type TableStats, type TablesSnapshot } from '../../src/probes/tables.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { closeNodes, probeOnce } from '../support/probe.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

let cluster: TestCluster;
let dsn: string;
let admin: pg.Client;

beforeAll(async () => {
  cluster = await createPrimary({ name: 'tables-probe' });
  dsn = cluster.dsn();
  admin = await openSession(dsn, 'test-tables-admin');
  await admin.query('create extension pgstattuple');
  await admin.query(`create table bloated (id int primary key, grp int not null, payload text not null) with (autovacuum_enabled = false)`);
  await admin.query('create index bloated_grp_idx on bloated (grp)');
  await admin.query(`insert into bloated select i, i % 10, repeat('x', 200) from generate_series(1, 200000) i`);
  await admin.query('analyze bloated');
  // Six rows in seven go, spread over every page and every index leaf.
  await admin.query('delete from bloated where id % 7 <> 0');
  // The delete's counters must reach the shared statistics before ANALYZE sets the live count:
  // flushed after it, they would take the deleted rows off the live count a second time (to 0).
  await admin.query('select pg_stat_force_next_flush()');
  await admin.query('analyze bloated');
  // ANALYZE leaves out the deletes this session has not reported yet; push them out now.
  await admin.query('select pg_stat_force_next_flush()');
});

// The tables go with the private cluster; closing the sessions first releases whatever a failed test left locked.
afterAll(async () => {
  await closeNodes();
  await closeAll();
  await destroyAll();
});

function tableNamed(snapshot: TablesSnapshot, name: string): TableStats {
  const found = snapshot.tables.find((table) => table.schema === 'public' && table.name === name);
  if (found === undefined) throw new Error(`table ${name} is not in the snapshot`);
  return found;
}

function indexNamed(snapshot: TablesSnapshot, name: string): IndexStats {
  const found = snapshot.indexes.find((index) => index.name === name);
  if (found === undefined) throw new Error(`index ${name} is not in the snapshot`);
  return found;
}

describe('tables probe', () => {
  it('sees dead tuples and a large estimated bloat after a mass delete, confirmed by pgstattuple', async () => {
    const snapshot = await waitFor('the mass delete to reach the statistics', async () => {
      const taken = await probeOnce(tablesProbe, dsn);
      // The counters arrive in more than one flush (the deletes, then ANALYZE's live count): wait for both.
      const table = tableNamed(taken, 'bloated');
      return (table.deadTuples ?? 0) > 0 && (table.liveTuples ?? 0) > 0 ? taken : undefined;
    });
    expect(snapshot.database).toBe('postgres');
    expect(snapshot.totalTables).toBeGreaterThanOrEqual(1);
    expect(snapshot.confirmation).toEqual({ available: true, reason: null });

    const table = tableNamed(snapshot, 'bloated');
    expect(table.autovacuumEnabled).toBe(false);
    expect(table.liveTuples).toBeGreaterThan(25_000);
    expect(table.deadTuples).toBeGreaterThan(150_000);
    expect(table.deadFraction).toBeGreaterThan(0.7);
    expect(table.tableBytes).toBeGreaterThan(40 * 1024 * 1024);
    expect(table.totalBytes).toBe((table.tableBytes ?? 0) + (table.indexesBytes ?? 0) + (table.toastBytes ?? 0));
    expect(table.analyzeCount).toBe(2);
    expect(table.lastAnalyze).not.toBeNull();
    expect(table.lastVacuum).toBeNull();
    expect(table.estimatedBloatFraction).toBeGreaterThan(0.75);
    expect(table.estimatedBloatBytes).toBeGreaterThan(0.75 * (table.tableBytes ?? 0));
    // pgstattuple_approx: the deleted rows are still there, dead.
    expect(table.confirmed?.deadTupleBytes).toBeGreaterThan(0.7 * (table.confirmed?.tableBytes ?? 0));
    expect(table.confirmed?.bloatFraction).toBeGreaterThan(0.75);

    const primaryKey = indexNamed(snapshot, 'bloated_pkey');
    expect(primaryKey).toMatchObject({ table: 'bloated', btree: true, unique: true, primary: true, valid: true, duplicatesLikely: false });
    expect(primaryKey.estimatedBloatFraction).toBeGreaterThan(0.75);
    // Before VACUUM the dead entries still fill the leaves.
    expect(primaryKey.confirmed?.avgLeafDensity).toBeGreaterThan(80);

    // Ten distinct values: de-duplication makes the estimate meaningless, so only pgstatindex counts.
    const group = indexNamed(snapshot, 'bloated_grp_idx');
    expect(group.duplicatesLikely).toBe(true);
    expect(group.estimatedBloatBytes).toBeNull();
    expect(group.confirmed?.leafPages).toBeGreaterThan(0);
  });

  it('sees the dead tuples go after VACUUM, and the index leaves empty out', async () => {
    // FREEZE makes it aggressive: a plain VACUUM passes over a page whose cleanup lock it cannot
    // take at once (the checkpointer writing it out, under load) and leaves its dead tuples.
    await admin.query('vacuum (freeze) bloated');
    const snapshot = await probeOnce(tablesProbe, dsn);
    const table = tableNamed(snapshot, 'bloated');
    expect(table.deadTuples).toBeLessThan(1000);
    expect(table.vacuumCount).toBe(1);
    expect(table.lastVacuum).not.toBeNull();
    // The space is free now but still allocated: the table is as bloated as before.
    expect(table.confirmed?.deadTupleBytes).toBeLessThan(0.05 * (table.confirmed?.tableBytes ?? 0));
    expect(table.confirmed?.freeBytes).toBeGreaterThan(0.7 * (table.confirmed?.tableBytes ?? 0));
    const primaryKey = indexNamed(snapshot, 'bloated_pkey');
    expect(primaryKey.confirmed?.avgLeafDensity).toBeLessThan(40);
    expect(primaryKey.confirmed?.bloatFraction).toBeGreaterThan(0.5);
  });

  it('runs as a role that is only a member of pg_monitor: pgstattuple works, estimates need SELECT', async () => {
    await admin.query('create role monitor login in role pg_monitor');
    const monitorDsn = cluster.dsn('postgres', 'monitor');
    let snapshot = await probeOnce(tablesProbe, monitorDsn);
    let table = tableNamed(snapshot, 'bloated');
    expect(table.tableBytes).toBeGreaterThan(0);
    expect(table.deadFraction).not.toBeNull();
    // pg_stats hides the columns of tables this role may not read.
    expect(table.estimatedBloatBytes).toBeNull();
    expect(snapshot.confirmation.available).toBe(true);
    expect(table.confirmed?.bloatFraction).toBeGreaterThan(0.75);
    expect(indexNamed(snapshot, 'bloated_pkey').confirmed).not.toBeNull();

    await admin.query('grant select on bloated to monitor');
    snapshot = await probeOnce(tablesProbe, monitorDsn);
    table = tableNamed(snapshot, 'bloated');
    expect(table.estimatedBloatFraction).toBeGreaterThan(0.75);
    await closeNodes();
    await admin.query('revoke select on bloated from monitor');
    await admin.query('drop role monitor');
  });

  it('lists a table under an ACCESS EXCLUSIVE lock without sizes instead of waiting for it', async () => {
    await admin.query('create table locked_table (id int primary key)');
    const holder = await openSession(dsn, 'test-tables-locker');
    await holder.query('begin');
    await holder.query('lock table locked_table in access exclusive mode');
    const snapshot = await probeOnce(tablesProbe, dsn);
    const table = tableNamed(snapshot, 'locked_table');
    expect(table.locked).toBe(true);
    expect(table.tableBytes).toBeNull();
    expect(indexNamed(snapshot, 'locked_table_pkey').indexBytes).toBeNull();
    expect(tableNamed(snapshot, 'bloated').locked).toBe(false);
    await holder.query('rollback');
  });

  it('shows a VACUUM in progress with its phase and progress', async () => {
    await admin.query(`create table slow_vacuum with (autovacuum_enabled = false) as select i as id, repeat('y', 100) as payload from generate_series(1, 50000) i`);
    const pages = Number((await admin.query<{ pages: string }>(`select pg_relation_size('slow_vacuum') / current_setting('block_size')::int as pages`)).rows[0]?.pages);
    const vacuumer = await openSession(dsn, 'test-tables-vacuum');
    const pid = await backendPid(vacuumer);
    // One page per 100 ms sleep: the VACUUM takes minutes, so it is observed mid-run and then cancelled.
    await vacuumer.query('set vacuum_cost_delay = 100');
    await vacuumer.query('set vacuum_cost_limit = 1');
    const running = vacuumer.query('vacuum slow_vacuum').then(() => undefined, (error: unknown) => error);

    const snapshot = await waitFor('the VACUUM of slow_vacuum to have scanned a page', async () => {
      const taken = await probeOnce(tablesProbe, dsn);
      const vacuum = taken.vacuums.find((v) => v.pid === pid);
      return vacuum !== undefined && (vacuum.heapBlocksScanned ?? 0) > 0 ? taken : undefined;
    });
    const vacuum = snapshot.vacuums.find((v) => v.pid === pid);
    expect(vacuum).toMatchObject({ database: 'postgres', schema: 'public', table: 'slow_vacuum', phase: 'scanning heap', autovacuum: false, wraparound: false });
    expect(vacuum?.heapBlocksTotal).toBe(pages);
    expect(vacuum?.percent).toBeGreaterThan(0);
    expect(vacuum?.percent).toBeLessThan(100);
    expect(vacuum?.runningSeconds).toBeGreaterThanOrEqual(0);

    await admin.query('select pg_cancel_backend($1)', [pid]);
    expect((await running) as { code?: string } | undefined).toMatchObject({ code: '57014' });
  });

  it('reports an invalid unique index, first while CREATE INDEX CONCURRENTLY builds it, then after it failed', async () => {
    await admin.query('create table dup_keys (id int, v int)');
    await admin.query('insert into dup_keys select i, i % 100 from generate_series(1, 1000) i');
    // An open writer holds the build in its first wait, with the index already in pg_index.
    const writer = await openSession(dsn, 'test-tables-writer');
    await writer.query('begin');
    await writer.query('insert into dup_keys values (0, 0)');
    const builder = await openSession(dsn, 'test-tables-cic');
    const building = builder.query('create unique index concurrently dup_keys_v_key on dup_keys (v)').then(() => undefined, (error: unknown) => error);

    const during = await waitFor('the concurrent build to be waiting', async () => {
      const taken = await probeOnce(tablesProbe, dsn);
      return taken.invalidIndexes.some((index) => index.name === 'dup_keys_v_key' && index.building === true) ? taken : undefined;
    });
    const inProgress = during.invalidIndexes.find((index) => index.name === 'dup_keys_v_key');
    expect(inProgress).toMatchObject({ schema: 'public', table: 'dup_keys', unique: true, primary: false, building: true });
    expect(inProgress?.buildPhase).toMatch(/^waiting for/);
    expect(inProgress?.definition).toBe('CREATE UNIQUE INDEX dup_keys_v_key ON public.dup_keys USING btree (v)');

    await writer.query('commit');
    expect((await building) as { code?: string } | undefined).toMatchObject({ code: '23505' });
    const after = await probeOnce(tablesProbe, dsn);
    const failed = after.invalidIndexes.find((index) => index.name === 'dup_keys_v_key');
    expect(failed).toMatchObject({ table: 'dup_keys', unique: true, primary: false, building: false, buildPhase: null });
    // The build aborted, so the index keeps the empty file it was created with.
    expect(failed?.indexBytes).toBe(0);
    expect(indexNamed(after, 'dup_keys_v_key').valid).toBe(false);
  });
});
