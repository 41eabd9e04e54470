import { describe, expect, it } from 'vitest';
import type { Row } from '../../src/db/types.js';
import { buildLockTree, locksProbe } from '../../src/probes/locks.js';
import type { LockTreeNode, LockWaiter, LocksSnapshot, RootBlocker } from '../../src/probes/locks.js';

const context = { server: undefined, now: new Date('2024-05-01T12:00:00Z'), previous: undefined };

/** A row as the driver returns it: int8 as a string, int[] parsed, NULLs as null. */
function waiterRow(pid: number, blockedBy: number[], extra: Partial<Record<string, unknown>> = {}): Row {
  return {
    pid, waiting: true, blocked_by: blockedBy, database: 'app', user: 'alice', application: `app-${pid}`, state: 'active',
    query: `update t set v = 1 -- ${pid}`, xact_seconds: 12.5, state_seconds: 3.25, wait_seconds: 3.0,
    mode: 'AccessExclusiveLock', lock_type: 'relation', relation_id: '16388', relation: 'public.t', ...extra,
  };
}

function blockerRow(pid: number, extra: Partial<Record<string, unknown>> = {}): Row {
  return {
    pid, waiting: false, blocked_by: null, database: 'app', user: 'bob', application: `app-${pid}`, state: 'idle in transaction',
    query: `select 1 -- ${pid}`, xact_seconds: 60.5, state_seconds: 59.0, wait_seconds: null,
    mode: null, lock_type: null, relation_id: null, relation: null, ...extra,
  };
}

function parse(rows: Row[]): LocksSnapshot {
  return locksProbe.parse({ sessions: rows }, context);
}

function waiter(pid: number, blockedBy: number[], waitSeconds = 1): LockWaiter {
  return {
    pid, blockedBy, waitSeconds, mode: 'ShareLock', lockType: 'transactionid', relation: null, relationId: null,
    database: 'app', user: 'alice', application: 'a', state: 'active', query: 'q', xactSeconds: 1, stateSeconds: 1,
  };
}

function blocker(pid: number, waitingBehind = 0): RootBlocker {
  return {
    pid, preparedTransaction: pid === 0, database: 'app', user: 'bob', application: 'b', state: 'idle in transaction',
    query: 'q', xactSeconds: 1, stateSeconds: 1, waitingBehind,
  };
}

type Shape = [number | string, Shape[]];
/** Nested pids; '!' marks a cycle, '+' a collapsed subtree. */
function shape(node: LockTreeNode): Shape {
  const mark = node.cycle ? '!' : node.collapsed ? '+' : '';
  return [mark === '' ? node.pid : `${node.pid}${mark}`, node.children.map(shape)];
}

describe('locks probe parse', () => {
  it('splits waiters from root blockers, converts int8 and counts the sessions behind each blocker', () => {
    const snapshot = parse([
      waiterRow(30, [20, 10, 20]),
      waiterRow(40, [30], { mode: 'AccessShareLock', wait_seconds: 1.5 }),
      blockerRow(10),
      blockerRow(20, { xact_seconds: 5, state_seconds: 4 }),
      blockerRow(50),
      waiterRow(60, [50], { relation_id: null, relation: null, lock_type: 'transactionid', mode: 'ShareLock' }),
    ]);
    expect(snapshot.waiters.map((w) => w.pid)).toEqual([30, 40, 60]);
    expect(snapshot.waiters[0]).toEqual({
      pid: 30, blockedBy: [10, 20], waitSeconds: 3, mode: 'AccessExclusiveLock', lockType: 'relation', relation: 'public.t',
      relationId: 16388, database: 'app', user: 'alice', application: 'app-30', state: 'active', query: 'update t set v = 1 -- 30',
      xactSeconds: 12.5, stateSeconds: 3.25,
    });
    expect(snapshot.waiters[2]).toMatchObject({ pid: 60, relation: null, relationId: null, lockType: 'transactionid', mode: 'ShareLock' });
    // 10 and 20 each have 30 and 40 behind them; 50 has only 60.
    expect(snapshot.rootBlockers.map((b) => [b.pid, b.waitingBehind])).toEqual([[10, 2], [20, 2], [50, 1]]);
    expect(snapshot.rootBlockers[1]).toEqual({
      pid: 20, preparedTransaction: false, database: 'app', user: 'bob', application: 'app-20', state: 'idle in transaction',
      query: 'select 1 -- 20', xactSeconds: 5, stateSeconds: 4, waitingBehind: 2,
    });
  });

  it('keeps NULLs as null: a wait that ended before pg_locks was read, and a prepared transaction blocker', () => {
    const snapshot = parse([
      waiterRow(30, [0], { mode: null, lock_type: null, relation: null, relation_id: null, wait_seconds: null, database: null, user: null, state: null }),
      blockerRow(0, { database: null, user: null, application: null, state: null, query: null, xact_seconds: null, state_seconds: null }),
    ]);
    expect(snapshot.waiters[0]).toMatchObject({ mode: null, lockType: null, relation: null, relationId: null, waitSeconds: null, database: null, user: null, state: null });
    expect(snapshot.rootBlockers).toEqual([{
      pid: 0, preparedTransaction: true, database: null, user: null, application: null, state: null, query: null,
      xactSeconds: null, stateSeconds: null, waitingBehind: 1,
    }]);
  });

  it("hides pgwarden's own waiters unless someone waits behind them, and blockers nobody shown waits for", () => {
    const snapshot = parse([
      blockerRow(10),
      // A probe queued behind 10 with nobody behind it: noise.
      waiterRow(20, [10], { application: 'pgwarden' }),
      // A blocker whose only waiter is a pgwarden probe: not a pile-up.
      blockerRow(30),
      waiterRow(31, [30], { application: 'pgwarden-probe' }),
      waiterRow(32, [31], { application: 'pgwarden' }),
      // A pgwarden action that others queue behind stays, and so does its blocker.
      blockerRow(40),
      waiterRow(41, [40], { application: 'pgwarden-action' }),
      waiterRow(42, [41]),
      // A pgwarden session blocking a user session is a root blocker like any other.
      blockerRow(50, { application: 'pgwarden' }),
      waiterRow(51, [50]),
    ]);
    expect(snapshot.waiters.map((w) => w.pid)).toEqual([41, 42, 51]);
    expect(snapshot.rootBlockers.map((b) => [b.pid, b.waitingBehind])).toEqual([[40, 2], [50, 1]]);
  });

  it('returns an empty snapshot when nobody waits', () => {
    expect(parse([])).toEqual({ waiters: [], rootBlockers: [] });
  });

  it('selects waitstart from 14 and state_change before', () => {
    const server = (versionNum: number) => ({
      versionNum, version: String(versionNum), inRecovery: false, currentUser: 'u', database: 'd', superuser: false, monitor: true,
      extensions: {}, preloadLibraries: null,
    });
    expect(locksProbe.queries(server(140000)).sessions?.text).toContain('l.waitstart');
    expect(locksProbe.queries(server(130000)).sessions?.text).toContain('null::timestamptz as waitstart');
    expect(locksProbe.queries(server(100000)).sessions?.text).toContain('pg_blocking_pids(a.pid)');
  });
});

describe('buildLockTree', () => {
  it('nests a waiter with two blockers under each of them, with the chain behind it', () => {
    const tree = buildLockTree({ waiters: [waiter(30, [10, 20]), waiter(40, [30])], rootBlockers: [blocker(10, 2), blocker(20, 2)] });
    expect(tree.roots.map(shape)).toEqual([
      [10, [[30, [[40, []]]]]],
      [20, [[30, [[40, []]]]]],
    ]);
    expect(tree.nodeCount).toBe(6);
    const first = tree.roots[0];
    expect(first?.blocker?.pid).toBe(10);
    expect(first?.waiter).toBeNull();
    expect(first?.children[0]?.waiter?.blockedBy).toEqual([10, 20]);
    expect(first?.children[0]?.children[0]?.depth).toBe(2);
  });

  it('orders waiters by how long they have waited', () => {
    const tree = buildLockTree({ waiters: [waiter(30, [10], 1), waiter(31, [10], 9), waiter(32, [10], 5)], rootBlockers: [blocker(10, 3)] });
    expect(tree.roots[0]?.children.map((child) => child.pid)).toEqual([31, 32, 30]);
  });

  it('stops at a deadlock cycle and roots it at a member, with the sessions queued behind it', () => {
    // 30 → 40 → 50 → 30, and 60 waits for 40.
    const tree = buildLockTree({ waiters: [waiter(60, [40]), waiter(40, [30]), waiter(50, [40]), waiter(30, [50])], rootBlockers: [] });
    expect(tree.roots.map(shape)).toEqual([[30, [[40, [[50, [['30!', []]]], [60, []]]]]]]);
    const again = tree.roots[0]?.children[0]?.children[0]?.children[0];
    expect(again?.cycle).toBe(true);
    expect(again?.waiter?.pid).toBe(30);
  });

  it('follows a root blocker into a cycle without adding another root', () => {
    const tree = buildLockTree({ waiters: [waiter(30, [10, 40]), waiter(40, [30])], rootBlockers: [blocker(10, 2)] });
    expect(tree.roots.map(shape)).toEqual([[10, [[30, [[40, [['30!', []]]]]]]]]);
  });

  it('makes a root of a waiter whose blocker is not in the snapshot', () => {
    const tree = buildLockTree({ waiters: [waiter(30, [99]), waiter(31, [30])], rootBlockers: [] });
    expect(tree.roots.map(shape)).toEqual([[30, [[31, []]]]]);
    expect(tree.roots[0]?.waiter?.pid).toBe(30);
  });

  it('bounds a long queue where each waiter waits for all earlier ones', () => {
    // pg_blocking_pids lists every conflicting request queued ahead: fully repeated, this tree has 2^n nodes.
    const waiters = Array.from({ length: 40 }, (_, i) => waiter(100 + i, [1, ...Array.from({ length: i }, (_, j) => 100 + j)]));
    const tree = buildLockTree({ waiters, rootBlockers: [blocker(1, 40)] }, { maxNodes: 200 });
    // Each waiter is expanded once in full, every other appearance is listed under its blocker, collapsed past the budget.
    const edges = waiters.reduce((sum, w) => sum + w.blockedBy.length, 0);
    expect(tree.nodeCount).toBeLessThanOrEqual(200 + 1 + edges);
    expect(tree.nodeCount).toBeGreaterThan(200);
    const pids = new Set<number>();
    let collapsed = 0;
    const walk = (node: LockTreeNode): void => {
      pids.add(node.pid);
      if (node.collapsed) collapsed += 1;
      node.children.forEach(walk);
    };
    tree.roots.forEach(walk);
    expect(pids.size).toBe(41);
    expect(collapsed).toBeGreaterThan(0);
    expect(tree.roots[0]?.children.map((child) => child.pid)).toEqual(waiters.map((w) => w.pid));
  });

  it('returns no roots for an empty snapshot', () => {
    expect(buildLockTree({ waiters: [], rootBlockers: [] })).toEqual({ roots: [], nodeCount: 0 });
  });
});
