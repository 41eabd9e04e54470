import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { databasesProbe, type DatabaseStats, type DatabasesSnapshot } from '../../src/probes/databases.js';
import type { Stamped } from '../../src/probes/types.js';
import { waitFor } from '../support/cluster.js';
import { closeNodes, probeOnce } from '../support/probe.js';
import { closeAll, openSession } from '../support/sessions.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const suffix = `${process.pid}_${Date.now()}`;
const table = `dbprobe_deadlock_${suffix}`;
const monitorRole = `dbprobe_monitor_${suffix}`;
let admin: pg.Client;

beforeAll(async () => {
  admin = await openSession(dsn, 'test-databases-admin');
  await admin.query(`create table ${table} (id int primary key, v int not null)`);
  await admin.query(`insert into ${table} values (1, 0), (2, 0)`);
});

afterAll(async () => {
  await closeNodes();
  // Close every session first: one left in a transaction by a failed test would block the drops.
  await closeAll();
  const cleanup = await openSession(dsn, 'test-databases-cleanup');
  await cleanup.query(`drop table if exists ${table}`);
  await cleanup.query(`drop role if exists ${monitorRole}`);
  await closeAll();
});

function stamped(snapshot: DatabasesSnapshot): Stamped<DatabasesSnapshot> {
  return { snapshot, at: snapshot.sampledAt };
}

function testDb(snapshot: DatabasesSnapshot): DatabaseStats {
  const found = snapshot.databases.find((database) => database.name === 'test');
  if (found === undefined) throw new Error('database "test" is not in the snapshot');
  return found;
}

/** Polls until a snapshot taken against `previous` satisfies `done` (backends flush their statistics lazily). */
async function snapshotAfter(previous: DatabasesSnapshot, what: string, done: (db: DatabaseStats) => boolean): Promise<DatabasesSnapshot> {
  return waitFor(what, async () => {
    const snapshot = await probeOnce(databasesProbe, dsn, { previous: stamped(previous) });
    return done(testDb(snapshot)) ? snapshot : undefined;
  });
}

// Makes the session's pending statistics reach shared memory when it next goes idle (PostgreSQL 15+).
async function flushStats(client: pg.Client): Promise<void> {
  await client.query('select pg_stat_force_next_flush()');
}

describe('databases probe', () => {
  it('lists the test database and template0 with sane values', async () => {
    const snapshot = await probeOnce(databasesProbe, dsn);
    const db = testDb(snapshot);
    expect(db.allowConnections).toBe(true);
    expect(db.connections).toBeGreaterThanOrEqual(1);
    expect(db.commits).toBeGreaterThan(0);
    expect(db.cacheHitFraction).toBeGreaterThan(0);
    expect(db.cacheHitFraction).toBeLessThanOrEqual(1);
    expect(db.xidAge).toBeGreaterThan(0);
    expect(db.xidFraction).toBeCloseTo((db.xidAge ?? 0) / 2 ** 31, 12);
    expect(db.xidFraction).toBeLessThan(0.5);
    expect(db.multixactAge).toBeGreaterThanOrEqual(0);
    expect(db.sizeBytes).toBeGreaterThan(1024 * 1024);
    // The first snapshot has nothing to compare with.
    expect(snapshot.intervalSeconds).toBeNull();
    expect(db.commitsPerSecond).toBeNull();
    expect(db.deadlocksDelta).toBeNull();
    expect(snapshot.sizesAt).toEqual(snapshot.sampledAt);

    const template0 = snapshot.databases.find((database) => database.name === 'template0');
    expect(template0?.allowConnections).toBe(false);
    expect(template0?.xidAge).toBeGreaterThan(0);
    expect(template0?.sizeBytes).toBeGreaterThan(0);
  });

  it('computes a positive commit rate across commits between two snapshots', async () => {
    const first = await probeOnce(databasesProbe, dsn);
    const worker = await openSession(dsn, 'test-databases-commits');
    for (let i = 0; i < 100; i++) await worker.query('select 1');
    await flushStats(worker);
    const base = testDb(first).commits;
    const second = await snapshotAfter(first, '100 more commits in database test', (db) => db.commits >= base + 100);
    const db = testDb(second);
    expect(second.intervalSeconds).toBeGreaterThan(0);
    expect(db.commitsPerSecond).toBeGreaterThan(0);
    expect(db.commitsPerSecond).toBeCloseTo((db.commits - base) / (second.intervalSeconds ?? 1), 6);
    expect(db.statsWereReset).toBe(false);
  });

  it('counts a real deadlock in the delta since the previous snapshot', async () => {
    const first = await probeOnce(databasesProbe, dsn);
    const a = await openSession(dsn, 'test-databases-deadlock-a');
    const b = await openSession(dsn, 'test-databases-deadlock-b');
    await a.query('begin');
    await a.query(`update ${table} set v = v + 1 where id = 1`);
    await b.query('begin');
    await b.query(`update ${table} set v = v + 1 where id = 2`);
    const outcomeA = a.query(`update ${table} set v = v + 1 where id = 2`).then(() => undefined, (error: unknown) => error);
    await waitFor('session a to wait for session b', async () => {
      const rows = await admin.query("select 1 from pg_stat_activity where application_name = 'test-databases-deadlock-a' and wait_event_type = 'Lock'");
      return rows.rowCount === 1;
    });
    const outcomeB = b.query(`update ${table} set v = v + 1 where id = 1`).then(() => undefined, (error: unknown) => error);
    const errors = await Promise.all([outcomeA, outcomeB]);
    expect(errors.map((error) => (error as { code?: string } | undefined)?.code).filter((code) => code === '40P01')).toHaveLength(1);
    await a.query('rollback');
    await b.query('rollback');
    await flushStats(a);
    await flushStats(b);

    const second = await snapshotAfter(first, 'a deadlock in database test', (db) => (db.deadlocksDelta ?? 0) >= 1);
    const db = testDb(second);
    expect(db.deadlocks).toBeGreaterThanOrEqual(testDb(first).deadlocks + 1);
    expect(db.deadlocksDelta).toBe(db.deadlocks - testDb(first).deadlocks);
  });

  it('sees temp files written by a sort that does not fit work_mem', async () => {
    const first = await probeOnce(databasesProbe, dsn);
    const worker = await openSession(dsn, 'test-databases-temp');
    await worker.query("set work_mem = '64kB'");
    await worker.query('select count(*) from (select g from generate_series(1, 200000) g order by g desc offset 1) s');
    await flushStats(worker);
    const before = testDb(first);
    const second = await snapshotAfter(first, 'temp bytes to grow in database test', (db) => db.tempBytes > before.tempBytes);
    const db = testDb(second);
    expect(db.tempFiles).toBeGreaterThan(before.tempFiles);
    expect(db.tempBytes - before.tempBytes).toBeGreaterThan(64 * 1024);
    expect(db.tempBytesPerSecond).toBeGreaterThan(0);
    expect(db.tempFilesPerSecond).toBeGreaterThan(0);
  });

  it('measures sizes on the slow cadence and carries them forward in between', async () => {
    const first = await probeOnce(databasesProbe, dsn);
    expect(Object.keys(databasesProbe.queries(undefined, stamped(first)))).toEqual(['stats']);
    const second = await probeOnce(databasesProbe, dsn, { previous: stamped(first) });
    expect(second.sizesAt).toEqual(first.sizesAt);
    expect(testDb(second).sizeBytes).toBe(testDb(first).sizeBytes);

    const stale: DatabasesSnapshot = { ...first, sizesAt: new Date(Date.now() - 6 * 60_000) };
    expect(Object.keys(databasesProbe.queries(undefined, stamped(stale)))).toEqual(['stats', 'sizes']);
    const third = await probeOnce(databasesProbe, dsn, { previous: stamped(stale) });
    expect(third.sizesAt).toEqual(third.sampledAt);
  });

  it('runs as a role that is only a member of pg_monitor, sizing every database', async () => {
    await admin.query(`create role ${monitorRole} login in role pg_monitor`);
    const url = new URL(dsn);
    url.username = monitorRole;
    const snapshot = await probeOnce(databasesProbe, url.toString());
    expect(snapshot.databases.length).toBeGreaterThanOrEqual(3);
    for (const database of snapshot.databases) {
      expect(database.sizeBytes, database.name).toBeGreaterThan(0);
      expect(database.xidAge, database.name).not.toBeNull();
    }
    await closeNodes();
  });
});
