/**
 * Lock waits as a blocking tree, from pg_blocking_pids(): unlike a pg_locks self-join it knows
 * every blocker of a waiter (several holders, and conflicting requests queued ahead of it).
 */
import type { Row } from '../db/types.js';
import { activityInput } from './activity.js';
import type { Probe } from './types.js';
import { boolean, number, numberArray, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

/** A session waiting for a heavyweight lock. */
export interface LockWaiter {
  readonly pid: number;
  /** Every session it waits for, as pg_blocking_pids() reports them; 0 is a prepared transaction. */
  readonly blockedBy: readonly number[];
  /** Seconds waited for the lock (pg_locks.waitstart from 14; before 14, since the state last changed). */
  readonly waitSeconds: number | null;
  /** The mode requested, e.g. AccessExclusiveLock; null when the wait ended before pg_locks was read. */
  readonly mode: string | null;
  /** relation, tuple, transactionid, advisory…; null like mode. */
  readonly lockType: string | null;
  /** Schema-qualified relation for relation, page and tuple locks; null otherwise or in another database. */
  readonly relation: string | null;
  /** The relation's oid (also known for a relation of another database, whose name is not). */
  readonly relationId: number | null;
  readonly database: string | null;
  readonly user: string | null;
  readonly application: string;
  readonly state: string | null;
  /** The first 1,024 characters of the query text. */
  readonly query: string;
  readonly xactSeconds: number | null;
  readonly stateSeconds: number | null;
}

/** A session that blocks others and is not itself waiting for a lock: where a lock pile-up starts. */
export interface RootBlocker {
  /** 0 for a prepared transaction (which has no session; see pg_prepared_xacts). */
  readonly pid: number;
  readonly preparedTransaction: boolean;
  readonly database: string | null;
  readonly user: string | null;
  /** null when the session is not in pg_stat_activity (a prepared transaction). */
  readonly application: string | null;
  readonly state: string | null;
  readonly query: string | null;
  readonly xactSeconds: number | null;
  readonly stateSeconds: number | null;
  /** Distinct sessions waiting behind it, directly or through other waiters. */
  readonly waitingBehind: number;
}

export interface LocksSnapshot {
  /** Ordered by pid. */
  readonly waiters: readonly LockWaiter[];
  /** Ordered by waitingBehind, most first, then pid. */
  readonly rootBlockers: readonly RootBlocker[];
}

/** One session in the blocking tree; a waiter with several blockers appears under each of them. */
export interface LockTreeNode {
  readonly pid: number;
  readonly depth: number;
  /** Set for a waiting session. */
  readonly waiter: LockWaiter | null;
  /** Set for a root blocker. */
  readonly blocker: RootBlocker | null;
  readonly children: readonly LockTreeNode[];
  /** The pid is already an ancestor in this branch: a deadlock in progress. Its children are not repeated. */
  readonly cycle: boolean;
  /** Shown in full elsewhere; its children are left out to keep the tree small. */
  readonly collapsed: boolean;
}

export interface LockTree {
  readonly roots: readonly LockTreeNode[];
  readonly nodeCount: number;
}

const ownApplication = 'pgwarden';

function versionedSql(version: number): string {
  // pg_locks.waitstart appeared in 14; it can also be NULL for a moment after the wait began.
  const waitStart = version >= 140000 ? 'l.waitstart' : 'null::timestamptz as waitstart';
  return `
with waiting as (
  -- pg_blocking_pids() takes every lock-manager partition lock: call it only for lock waiters.
  select a.pid, pg_blocking_pids(a.pid) as blocked_by
    from pg_stat_activity a
   where a.wait_event_type = 'Lock' and a.pid <> pg_backend_pid()
), involved as (
  select pid, true as waiting, blocked_by from waiting
  union all
  select distinct b.pid, false, null::int[]
    from waiting w cross join lateral unnest(w.blocked_by) as b(pid)
   where not exists (select 1 from waiting x where x.pid = b.pid)
), wait_locks as (
  -- pg_locks is read only when someone waits (a one-time filter), and only once.
  select distinct on (l.pid) l.pid, l.mode, l.locktype, l.database, l.relation, ${waitStart}
    from pg_locks l
   where not l.granted and exists (select 1 from waiting)
   order by l.pid
)
select i.pid, i.waiting, i.blocked_by,
       a.datname as database, a.usename as "user", a.application_name as application, a.state,
       left(a.query, 1024) as query,
       extract(epoch from now() - a.xact_start)::float8 as xact_seconds,
       extract(epoch from now() - a.state_change)::float8 as state_seconds,
       case when i.waiting then greatest(0, extract(epoch from clock_timestamp() - coalesce(l.waitstart, a.state_change)))::float8 end as wait_seconds,
       l.mode, l.locktype as lock_type, l.relation::int8 as relation_id,
       case when c.oid is not null then format('%I.%I', n.nspname, c.relname) end as relation
  from involved i
  left join pg_stat_activity a on a.pid = i.pid
  left join wait_locks l on i.waiting and l.pid = i.pid
  left join pg_class c on c.oid = l.relation
        and l.database in (0, (select oid from pg_database where datname = current_database()))
  left join pg_namespace n on n.oid = c.relnamespace
 order by i.waiting, i.pid`;
}

/** Lock waiters with all their blockers, and the root blockers with the sessions piled up behind them. */
export const locksProbe: Probe<LocksSnapshot> = {
  id: 'locks',
  title: 'Locks',
  target: 'server',
  cadenceMs: 2000,
  minServerVersion: 100000,
  inputs: ['activity'],
  queries: (server, _previous, inputs) => {
    // Nobody waits on a lock in this refresh's activity snapshot: nothing to ask the server.
    const activity = activityInput(inputs);
    if (activity !== undefined && !activity.sessions.some((session) => session.waitEventType === 'Lock')) return {};
    return { sessions: { text: versionedSql(server?.versionNum ?? 150000) } };
  },
  parse(rows) {
    const all = rowsOf(rows, 'sessions');
    const waiterRows = all.filter((row) => boolean(row, 'waiting'));
    const blockerRows = all.filter((row) => !boolean(row, 'waiting'));
    const kept = prune(waiterRows, blockerRows);
    const waiters = waiterRows.filter((row) => kept.has(number(row, 'pid'))).map(parseWaiter);
    const waitersOf = waitersByBlocker(waiters);
    const rootBlockers = blockerRows
      .filter((row) => kept.has(number(row, 'pid')))
      .map((row) => parseBlocker(row, countBehind(number(row, 'pid'), waitersOf)))
      .sort((a, b) => b.waitingBehind - a.waitingBehind || a.pid - b.pid);
    return { waiters: waiters.sort((a, b) => a.pid - b.pid), rootBlockers };
  },
};

function isOwn(row: Row): boolean {
  return (stringOrNull(row, 'application') ?? '').startsWith(ownApplication);
}

/**
 * The pids to show. pgwarden's own sessions are hidden, except when someone else waits behind
 * them (hiding those would cut the tree); a blocker is dropped once nobody shown waits for it.
 */
function prune(waiterRows: readonly Row[], blockerRows: readonly Row[]): Set<number> {
  const blockedBy = new Map<number, readonly number[]>();
  for (const row of waiterRows) blockedBy.set(number(row, 'pid'), numberArray(row, 'blocked_by'));
  const kept = new Set([...waiterRows, ...blockerRows].map((row) => number(row, 'pid')));
  const removable = new Set([
    ...waiterRows.filter(isOwn).map((row) => number(row, 'pid')),
    ...blockerRows.map((row) => number(row, 'pid')),
  ]);
  for (let changed = true; changed; ) {
    changed = false;
    const waitedFor = new Set<number>();
    for (const [pid, blockers] of blockedBy) if (kept.has(pid)) for (const blocker of blockers) waitedFor.add(blocker);
    for (const pid of removable) {
      if (kept.has(pid) && !waitedFor.has(pid)) {
        kept.delete(pid);
        changed = true;
      }
    }
  }
  return kept;
}

function parseWaiter(row: Row): LockWaiter {
  return {
    pid: number(row, 'pid'),
    blockedBy: [...new Set(numberArray(row, 'blocked_by'))].sort((a, b) => a - b),
    waitSeconds: numberOrNull(row, 'wait_seconds'),
    mode: stringOrNull(row, 'mode'),
    lockType: stringOrNull(row, 'lock_type'),
    relation: stringOrNull(row, 'relation'),
    relationId: numberOrNull(row, 'relation_id'),
    database: stringOrNull(row, 'database'),
    user: stringOrNull(row, 'user'),
    application: string(row, 'application'),
    state: stringOrNull(row, 'state'),
    query: string(row, 'query'),
    xactSeconds: numberOrNull(row, 'xact_seconds'),
    stateSeconds: numberOrNull(row, 'state_seconds'),
  };
}

function parseBlocker(row: Row, waitingBehind: number): RootBlocker {
  const pid = number(row, 'pid');
  return {
    pid,
    preparedTransaction: pid === 0,
    database: stringOrNull(row, 'database'),
    user: stringOrNull(row, 'user'),
    application: stringOrNull(row, 'application'),
    state: stringOrNull(row, 'state'),
    query: stringOrNull(row, 'query'),
    xactSeconds: numberOrNull(row, 'xact_seconds'),
    stateSeconds: numberOrNull(row, 'state_seconds'),
    waitingBehind,
  };
}

/** blocker pid → the waiters that list it, longest wait first (then pid), each waiter once per blocker. */
function waitersByBlocker(waiters: readonly LockWaiter[]): Map<number, LockWaiter[]> {
  const map = new Map<number, LockWaiter[]>();
  for (const waiter of waiters) {
    for (const blocker of new Set(waiter.blockedBy)) {
      const list = map.get(blocker);
      if (list === undefined) map.set(blocker, [waiter]);
      else list.push(waiter);
    }
  }
  for (const list of map.values()) list.sort((a, b) => (b.waitSeconds ?? 0) - (a.waitSeconds ?? 0) || a.pid - b.pid);
  return map;
}

function countBehind(pid: number, waitersOf: ReadonlyMap<number, readonly LockWaiter[]>): number {
  const seen = new Set<number>([pid]);
  const queue = [pid];
  for (let next = queue.pop(); next !== undefined; next = queue.pop()) {
    for (const waiter of waitersOf.get(next) ?? []) {
      if (!seen.has(waiter.pid)) {
        seen.add(waiter.pid);
        queue.push(waiter.pid);
      }
    }
  }
  return seen.size - 1;
}

/**
 * The blocking tree: each root blocker with its waiters nested, then one root per deadlock cycle
 * that no root blocker reaches. A waiter appears under every session it waits for; a cycle ends
 * at the repeated pid. Past maxNodes, a subtree already shown is not repeated (collapsed).
 */
export function buildLockTree(snapshot: LocksSnapshot, options: { readonly maxNodes?: number } = {}): LockTree {
  const maxNodes = options.maxNodes ?? 2000;
  const waiterByPid = new Map(snapshot.waiters.map((waiter) => [waiter.pid, waiter]));
  const blockerByPid = new Map(snapshot.rootBlockers.map((blocker) => [blocker.pid, blocker]));
  const waitersOf = waitersByBlocker(snapshot.waiters);
  const expanded = new Set<number>();
  const path = new Set<number>();
  let nodeCount = 0;

  const visit = (pid: number, depth: number): LockTreeNode => {
    nodeCount += 1;
    const waiter = waiterByPid.get(pid) ?? null;
    const blocker = waiter === null ? (blockerByPid.get(pid) ?? null) : null;
    const behind = waitersOf.get(pid) ?? [];
    if (path.has(pid)) return { pid, depth, waiter, blocker, children: [], cycle: true, collapsed: false };
    if (expanded.has(pid) && nodeCount >= maxNodes) {
      return { pid, depth, waiter, blocker, children: [], cycle: false, collapsed: behind.length > 0 };
    }
    expanded.add(pid);
    path.add(pid);
    const children = behind.map((child) => visit(child.pid, depth + 1));
    path.delete(pid);
    return { pid, depth, waiter, blocker, children, cycle: false, collapsed: false };
  };

  const roots = snapshot.rootBlockers.map((blocker) => visit(blocker.pid, 0));
  // Waiters no root blocker reaches wait in a cycle (or behind one): start from a cycle member.
  for (const waiter of [...snapshot.waiters].sort((a, b) => a.pid - b.pid)) {
    if (expanded.has(waiter.pid)) continue;
    roots.push(visit(cycleEntry(waiter, waiterByPid), 0));
  }
  return { roots, nodeCount };
}

/** Follows the lowest blocker upward until a pid repeats (a cycle member) or the chain leaves the waiters. */
function cycleEntry(start: LockWaiter, waiterByPid: ReadonlyMap<number, LockWaiter>): number {
  const seen = new Set<number>();
  let current = start;
  for (;;) {
    seen.add(current.pid);
    const up = current.blockedBy.map((pid) => waiterByPid.get(pid)).find((w) => w !== undefined);
    if (up === undefined) return current.pid;
    if (seen.has(up.pid)) return up.pid;
    current = up;
  }
}
