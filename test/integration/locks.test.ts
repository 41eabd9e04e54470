import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { buildLockTree, locksProbe } from '../../src/probes/locks.js';
import type { LockTreeNode, LocksSnapshot } from '../../src/probes/locks.js';
import type { PgNode } from '../../src/db/node.js';
import { waitFor } from '../support/cluster.js';
import { closeNodes, nodeFor, probeOnce } from '../support/probe.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const table = `pgw_locks_${suffix}`;
const app = `pgw-locks-${suffix}`;
const monitorRole = `pgw_mon_${suffix}`;

let admin: pg.Client;
let node: PgNode;
let tableOid: number;

async function session(name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = await openSession(dsn, `${app}-${name}`);
  return { client, pid: await backendPid(client) };
}

/** Polls the probe until the snapshot satisfies the condition. */
async function snapshotWhen(what: string, condition: (s: LocksSnapshot) => boolean, on: PgNode = node): Promise<LocksSnapshot> {
  return waitFor(what, async () => {
    const snapshot = await probeOnce(locksProbe, dsn, { node: on });
    return condition(snapshot) ? snapshot : undefined;
  });
}

function waiter(snapshot: LocksSnapshot, pid: number) {
  return snapshot.waiters.find((w) => w.pid === pid);
}

function involves(snapshot: LocksSnapshot, pids: readonly number[]): boolean {
  return snapshot.waiters.some((w) => pids.includes(w.pid)) || snapshot.rootBlockers.some((b) => pids.includes(b.pid));
}

/** The tree as nested pids, e.g. [A, [[C, [[D, []]]]]]; marks cycle nodes with '!'. */
type Shape = [number | string, Shape[]];
function shape(node: LockTreeNode): Shape {
  return [node.cycle ? `${node.pid}!` : node.pid, node.children.map(shape)];
}

/** A statement that is expected to block: keep its outcome so the test can await it later. */
function pending(client: pg.Client, sql: string): Promise<string> {
  return client.query(sql).then(() => 'done', (error: unknown) => (error instanceof Error ? error.message : String(error)));
}

beforeAll(async () => {
  admin = await openSession(dsn, `${app}-admin`);
  await admin.query(`create table ${table} (id int primary key, v int); insert into ${table} values (1, 1), (2, 2)`);
  const oid = await admin.query<{ oid: number }>(`select '${table}'::regclass::oid::int as oid`);
  tableOid = oid.rows[0]?.oid ?? 0;
  node = nodeFor(dsn);
});

// A failed test must not leave its locks behind for the next one.
afterEach(async () => {
  await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name like $1 and pid <> pg_backend_pid()', [`${app}-%`]);
});

afterAll(async () => {
  await closeAll();
  await closeNodes();
  const cleanup = await openSession(dsn, `${app}-cleanup`);
  await cleanup.query(`drop table if exists ${table}`);
  await cleanup.query(`drop role if exists ${monitorRole}`);
  await closeAll();
});

describe('locks probe', () => {
  it('builds the tree of a waiter with two blockers and a chain behind it, then clears', async () => {
    const a = await session('A');
    const b = await session('B');
    const c = await session('C');
    const d = await session('D');
    await a.client.query(`begin; select * from ${table} where id = 1 for update`);
    await b.client.query(`begin; select * from ${table} where id = 2 for share`);
    const cDone = pending(c.client, `begin; lock table ${table} in access exclusive mode`);
    // D must queue after C, so that it waits for C's request rather than racing it.
    await snapshotWhen('C waiting', (s) => waiter(s, c.pid) !== undefined);
    const dDone = pending(d.client, `select count(*) from ${table}`);
    const snapshot = await snapshotWhen('C and D waiting', (s) => waiter(s, c.pid) !== undefined && waiter(s, d.pid) !== undefined);

    const cWait = waiter(snapshot, c.pid);
    const dWait = waiter(snapshot, d.pid);
    expect(cWait?.blockedBy).toEqual([a.pid, b.pid].sort((x, y) => x - y));
    // Checked with psql: PostgreSQL reports only C for D (its AccessShareLock conflicts with C's queued request, not with A's or B's row locks).
    expect(dWait?.blockedBy).toEqual([c.pid]);
    expect(cWait).toMatchObject({
      mode: 'AccessExclusiveLock', lockType: 'relation', relation: `public.${table}`, relationId: tableOid,
      database: 'test', user: 'postgres', application: `${app}-C`, state: 'active',
      query: `begin; lock table ${table} in access exclusive mode`,
    });
    expect(dWait).toMatchObject({ mode: 'AccessShareLock', lockType: 'relation', relation: `public.${table}`, application: `${app}-D`, state: 'active' });
    expect(cWait?.waitSeconds).toBeGreaterThanOrEqual(0);
    expect(dWait?.waitSeconds).toBeGreaterThanOrEqual(0);
    // C queued before D, and waitstart (PG14+) tells them apart.
    expect(cWait?.waitSeconds ?? 0).toBeGreaterThan(dWait?.waitSeconds ?? Infinity);

    const rootA = snapshot.rootBlockers.find((r) => r.pid === a.pid);
    const rootB = snapshot.rootBlockers.find((r) => r.pid === b.pid);
    expect(rootA).toMatchObject({
      waitingBehind: 2, preparedTransaction: false, state: 'idle in transaction', user: 'postgres', database: 'test',
      application: `${app}-A`, query: `begin; select * from ${table} where id = 1 for update`,
    });
    expect(rootB).toMatchObject({ waitingBehind: 2, state: 'idle in transaction', application: `${app}-B` });
    expect(rootA?.xactSeconds).toBeGreaterThanOrEqual(rootA?.stateSeconds ?? Infinity);
    expect(snapshot.rootBlockers.some((r) => r.pid === c.pid || r.pid === d.pid)).toBe(false);

    const tree = buildLockTree(snapshot);
    const mine = tree.roots.filter((root) => root.pid === a.pid || root.pid === b.pid).map(shape);
    expect(mine).toEqual([
      [Math.min(a.pid, b.pid), [[c.pid, [[d.pid, []]]]]],
      [Math.max(a.pid, b.pid), [[c.pid, [[d.pid, []]]]]],
    ]);
    const underA = tree.roots.find((root) => root.pid === a.pid)?.children[0];
    expect(underA?.waiter?.mode).toBe('AccessExclusiveLock');
    expect(underA?.children[0]?.depth).toBe(2);

    // A and B end: C gets its lock and, idle in its transaction, becomes the root blocker of D.
    await a.client.query('rollback');
    await b.client.query('rollback');
    expect(await cDone).toBe('done');
    const afterAB = await snapshotWhen('C blocking D', (s) => s.rootBlockers.some((r) => r.pid === c.pid));
    expect(afterAB.rootBlockers.find((r) => r.pid === c.pid)).toMatchObject({ waitingBehind: 1, state: 'idle in transaction' });
    expect(waiter(afterAB, d.pid)?.blockedBy).toEqual([c.pid]);
    expect(involves(afterAB, [a.pid, b.pid])).toBe(false);

    await c.client.query('rollback');
    expect(await dDone).toBe('done');
    const cleared = await snapshotWhen('the tree cleared', (s) => !involves(s, [a.pid, b.pid, c.pid, d.pid]));
    expect(buildLockTree(cleared).roots.some((root) => [a.pid, b.pid, c.pid, d.pid].includes(root.pid))).toBe(false);
  });

  it('reports a row-lock wait on a transaction id with no relation', async () => {
    const holder = await session('row-holder');
    const updater = await session('row-updater');
    await holder.client.query(`begin; update ${table} set v = v + 1 where id = 1`);
    const done = pending(updater.client, `update ${table} set v = v + 10 where id = 1`);
    const snapshot = await snapshotWhen('the updater waiting', (s) => waiter(s, updater.pid) !== undefined);
    expect(waiter(snapshot, updater.pid)).toMatchObject({
      blockedBy: [holder.pid], mode: 'ShareLock', lockType: 'transactionid', relation: null, relationId: null,
    });
    expect(snapshot.rootBlockers.find((r) => r.pid === holder.pid)?.waitingBehind).toBe(1);
    await holder.client.query('rollback');
    expect(await done).toBe('done');
    await snapshotWhen('the row wait cleared', (s) => !involves(s, [holder.pid, updater.pid]));
  });

  it('shows a deadlock in progress as a cycle without root blockers', async () => {
    const x = await session('X');
    const y = await session('Y');
    // Delay the deadlock detector so that the cycle lasts long enough to be seen.
    for (const s of [x, y]) await s.client.query("set deadlock_timeout = '60s'");
    await x.client.query(`begin; update ${table} set v = v where id = 1`);
    await y.client.query(`begin; update ${table} set v = v where id = 2`);
    const xDone = pending(x.client, `update ${table} set v = v where id = 2`);
    await snapshotWhen('X waiting for Y', (s) => waiter(s, x.pid) !== undefined);
    const yDone = pending(y.client, `update ${table} set v = v where id = 1`);
    const snapshot = await snapshotWhen('the cycle', (s) => waiter(s, x.pid) !== undefined && waiter(s, y.pid) !== undefined);

    expect(waiter(snapshot, x.pid)?.blockedBy).toEqual([y.pid]);
    expect(waiter(snapshot, y.pid)?.blockedBy).toEqual([x.pid]);
    expect(involves({ waiters: [], rootBlockers: snapshot.rootBlockers }, [x.pid, y.pid])).toBe(false);
    const tree = buildLockTree(snapshot);
    const root = tree.roots.find((r) => r.pid === x.pid || r.pid === y.pid);
    expect(root).toBeDefined();
    if (root === undefined) return;
    const other = root.pid === x.pid ? y.pid : x.pid;
    expect(shape(root)).toEqual([root.pid, [[other, [[`${root.pid}!`, []]]]]]);

    await admin.query('select pg_cancel_backend($1)', [y.pid]);
    expect(await yDone).toMatch(/cancel/);
    await y.client.query('rollback');
    expect(await xDone).toBe('done');
    await x.client.query('rollback');
    await snapshotWhen('the cycle cleared', (s) => !involves(s, [x.pid, y.pid]));
  });

  it('sees waiters, blockers and their queries as a role that is only a member of pg_monitor', async () => {
    await admin.query(`create role ${monitorRole} login in role pg_monitor`);
    const monitorNode = nodeFor(dsn.replace('postgres@', `${monitorRole}@`));
    const holder = await session('mon-holder');
    const waiting = await session('mon-waiter');
    await holder.client.query(`begin; lock table ${table} in share mode`);
    const done = pending(waiting.client, `insert into ${table} values (3, 3)`);
    const snapshot = await snapshotWhen('the insert waiting, seen by the monitor role', (s) => waiter(s, waiting.pid) !== undefined, monitorNode);
    expect(waiter(snapshot, waiting.pid)).toMatchObject({
      blockedBy: [holder.pid], mode: 'RowExclusiveLock', relation: `public.${table}`, user: 'postgres', query: `insert into ${table} values (3, 3)`,
    });
    expect(snapshot.rootBlockers.find((r) => r.pid === holder.pid)).toMatchObject({
      user: 'postgres', state: 'idle in transaction', query: `begin; lock table ${table} in share mode`, waitingBehind: 1,
    });
    await holder.client.query('rollback');
    expect(await done).toBe('done');
    await snapshotWhen('the wait cleared', (s) => !involves(s, [holder.pid, waiting.pid]), monitorNode);
  });
});
