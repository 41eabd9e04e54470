/** Checks on sessions: idle in transaction, long queries, the oldest transaction, lock waits. */
import { formatCount, formatDuration } from '../format/units.js';
import type { Session } from '../probes/activity.js';
import { buildLockTree, type LockTreeNode, type LocksSnapshot } from '../probes/locks.js';
import type { Check, Finding, FindingSession } from './types.js';
import { against, finding, level, optionalSnapshot, sessionContext, snapshotOf, thresholdFor, whoIs } from './helpers.js';

const seconds = (n: number): string => formatDuration(n);

type TimeThresholds = { readonly warningSeconds: number; readonly criticalSeconds: number };

/** The one ok finding of a per-session check when no session crosses the warning threshold. */
function noneFound(checkId: string, what: string, warning: number, largest: number | null): Finding {
  return finding(checkId, {
    severity: 'ok', subject: 'cluster', value: largest, threshold: warning, warningThreshold: warning, unit: 'seconds',
    message: `no session ${what} for ${seconds(warning)} or more${largest === null ? '' : ` (longest ${seconds(largest)})`}`,
  });
}

/** Sessions idle inside an open transaction: they hold locks and the xmin horizon. */
export const idleInTransactionCheck: Check<TimeThresholds> = {
  id: 'idle-in-transaction',
  title: 'Idle in transaction',
  description: 'A session opened a transaction and stopped sending queries. It keeps its locks and holds back vacuum everywhere until it commits, rolls back or is ended.',
  cadence: 'fast',
  probes: ['activity'],
  defaults: { warningSeconds: 300, criticalSeconds: 900 },
  levels: (t) => ({ warning: `a session idle in transaction for ${seconds(t.warningSeconds)}`, critical: `for ${seconds(t.criticalSeconds)}` }),
  evaluate({ results, thresholds: t }) {
    const id = 'idle-in-transaction';
    const { snapshot, unknown } = snapshotOf(id, results, 'activity');
    if (unknown !== undefined) return [unknown];
    const idle = snapshot.sessions.filter((s) => s.state !== null && s.state.startsWith('idle in transaction') && s.stateSeconds !== null);
    const findings = idle.flatMap((s) => {
      const value = s.stateSeconds ?? 0;
      const severity = level(value, t.warningSeconds, t.criticalSeconds);
      if (severity === 'ok') return [];
      return [finding(id, {
        severity, subject: `pid ${s.pid}`, value, threshold: thresholdFor(severity, t.warningSeconds, t.criticalSeconds), warningThreshold: t.warningSeconds, unit: 'seconds',
        message: `${whoIs(s)} ${s.state ?? 'idle in transaction'} for ${seconds(value)} ${against(severity, t.warningSeconds, t.criticalSeconds, seconds)}`,
        context: { sessions: [sessionContext(s)], details: { database: s.database, transactionSeconds: s.xactSeconds } },
      })];
    });
    const longest = idle.reduce<number | null>((max, s) => Math.max(max ?? 0, s.stateSeconds ?? 0), null);
    return findings.length > 0 ? findings : [noneFound(id, 'idle in transaction', t.warningSeconds, longest)];
  },
  runbook: {
    summary: 'A session opened a transaction and went quiet. It keeps every lock it took (others queue behind them) and stops vacuum from removing dead rows in every table.',
    steps: [
      'Look at it: `select pid, usename, application_name, client_addr, now() - xact_start as xact_age, now() - state_change as idle_for, query from pg_stat_activity where state like \'idle in transaction%\' order by state_change;` (the query shown is the last one it ran, not necessarily the one that took the locks).',
      'Does anyone wait behind it? `select pid, pg_blocking_pids(pid) from pg_stat_activity where wait_event_type = \'Lock\';` If so, this is urgent.',
      'Ending it is safe for the database: its transaction is rolled back (its uncommitted work is lost, which the application must handle). `select pg_terminate_backend(<pid>);` — or with the Activity view\'s terminate command. `pg_cancel_backend()` does nothing to an idle session.',
      'Tell the application\'s owners: the usual causes are a missing commit on an error path, or work (HTTP calls, user input) done inside a transaction. Setting `idle_in_transaction_session_timeout` for that role makes the server end such sessions itself: `alter role <role> set idle_in_transaction_session_timeout = \'15min\';`.',
      'Escalate when it is a migration or a batch job whose rollback would cost hours of work: ask its owner before terminating.',
    ],
  },
};

/** Queries that have been running for a long time. */
export const longQueryCheck: Check<TimeThresholds> = {
  id: 'long-running-query',
  title: 'Long-running query',
  description: 'A client session has been running one statement for a long time. Long queries hold locks and the xmin horizon, and often mean a bad plan or a runaway report.',
  cadence: 'fast',
  probes: ['activity'],
  defaults: { warningSeconds: 300, criticalSeconds: 1800 },
  levels: (t) => ({ warning: `one query running for ${seconds(t.warningSeconds)}`, critical: `for ${seconds(t.criticalSeconds)}` }),
  evaluate({ results, thresholds: t }) {
    const id = 'long-running-query';
    const { snapshot, unknown } = snapshotOf(id, results, 'activity');
    if (unknown !== undefined) return [unknown];
    const active = snapshot.sessions.filter((s) => s.backendType === 'client backend' && s.state === 'active' && s.querySeconds !== null);
    const findings = active.flatMap((s) => {
      const value = s.querySeconds ?? 0;
      const severity = level(value, t.warningSeconds, t.criticalSeconds);
      if (severity === 'ok') return [];
      const waiting = s.waitEventType === null ? '' : `, waiting on ${s.waitEventType}/${s.waitEvent ?? '?'}`;
      return [finding(id, {
        severity, subject: `pid ${s.pid}`, value, threshold: thresholdFor(severity, t.warningSeconds, t.criticalSeconds), warningThreshold: t.warningSeconds, unit: 'seconds',
        message: `${whoIs(s)} running one query for ${seconds(value)}${waiting} ${against(severity, t.warningSeconds, t.criticalSeconds, seconds)}`,
        context: { sessions: [sessionContext(s)], details: { database: s.database, waitEvent: s.waitEvent, queryId: s.queryId } },
      })];
    });
    const longest = active.reduce<number | null>((max, s) => Math.max(max ?? 0, s.querySeconds ?? 0), null);
    return findings.length > 0 ? findings : [noneFound(id, 'running one query', t.warningSeconds, longest)];
  },
  runbook: {
    summary: 'A statement has been running for a long time. It may be a legitimate batch job, a report with a bad plan, or a query stuck behind a lock.',
    steps: [
      'Look at it: `select pid, usename, application_name, now() - query_start as running_for, wait_event_type, wait_event, query from pg_stat_activity where state = \'active\' and backend_type = \'client backend\' order by query_start limit 10;`',
      'If wait_event_type is Lock, it is a victim, not a cause: follow the lock-waits runbook to the blocker.',
      'Is it expected? Batch jobs, backups with pg_dump and migrations often run long: ask the owner (the application name and client address say who) before acting.',
      'Cancelling is safe and keeps the connection: `select pg_cancel_backend(<pid>);` (its transaction is rolled back). Use `pg_terminate_backend` only if cancel has no effect after a minute.',
      'To stop it recurring: `explain` the query from the finding\'s context on a replica, and consider `statement_timeout` for the role (`alter role <role> set statement_timeout = \'10min\';`).',
      'Escalate when it is a writer holding locks that others wait for, or its rollback would itself take long (a large update or delete).',
    ],
  },
};

/** The oldest open transaction, which sets how far back vacuum must keep row versions. */
export const oldestTransactionCheck: Check<TimeThresholds> = {
  id: 'oldest-transaction',
  title: 'Oldest transaction (xmin horizon)',
  description: 'How long the oldest open transaction has been open, in any session. Vacuum cannot remove row versions newer than it, anywhere in the cluster, so tables and indexes bloat while it stays open. Replication slots holding an xmin are listed in the context.',
  cadence: 'fast',
  probes: ['activity', 'replication'],
  defaults: { warningSeconds: 900, criticalSeconds: 3600 },
  levels: (t) => ({ warning: `a transaction open for ${seconds(t.warningSeconds)}`, critical: `for ${seconds(t.criticalSeconds)}` }),
  evaluate({ results, thresholds: t }) {
    const id = 'oldest-transaction';
    const { snapshot, unknown } = snapshotOf(id, results, 'activity');
    if (unknown !== undefined) return [unknown];
    const open = snapshot.sessions.filter((s): s is Session & { readonly xactSeconds: number } => s.xactSeconds !== null).sort((a, b) => b.xactSeconds - a.xactSeconds);
    const oldest = open[0];
    const replication = optionalSnapshot(results, 'replication');
    const slotXmins = (replication?.slots ?? [])
      .filter((slot) => slot.xminAge !== null || slot.catalogXminAge !== null)
      .map((slot) => `${slot.name} ${formatCount(Math.max(slot.xminAge ?? 0, slot.catalogXminAge ?? 0))}`)
      .join(', ');
    const details: Record<string, string | number | null> = { slotXminAges: slotXmins === '' ? null : slotXmins };
    if (oldest === undefined) {
      return [finding(id, {
        severity: 'ok', subject: 'cluster', value: null, threshold: t.warningSeconds, warningThreshold: t.warningSeconds, unit: 'seconds',
        message: `no open transaction (warning ≥ ${seconds(t.warningSeconds)})`, context: { details },
      })];
    }
    const value = oldest.xactSeconds;
    const severity = level(value, t.warningSeconds, t.criticalSeconds);
    const over = open.filter((s) => s.xactSeconds >= t.warningSeconds).slice(0, 10);
    return [finding(id, {
      severity, subject: 'cluster', value, threshold: thresholdFor(severity, t.warningSeconds, t.criticalSeconds), warningThreshold: t.warningSeconds, unit: 'seconds',
      message: `the oldest transaction, ${whoIs(oldest)} (${oldest.state ?? oldest.backendType}), has been open for ${seconds(value)} ${against(severity, t.warningSeconds, t.criticalSeconds, seconds)}`,
      context: {
        sessions: (over.length > 0 ? over : [oldest]).map(sessionContext),
        details: { ...details, pid: oldest.pid, backendXminAge: oldest.backendXminAge, backendType: oldest.backendType },
      },
    })];
  },
  runbook: {
    summary: 'A transaction has been open for a long time. Until it ends, vacuum cannot clean up any row version created after it started, in any table of the cluster: bloat grows and, eventually, wraparound protection kicks in.',
    steps: [
      'Find the holders of the horizon: `select pid, usename, application_name, backend_type, state, now() - xact_start as xact_age, age(backend_xmin) as xmin_age, query from pg_stat_activity where backend_xmin is not null order by age(backend_xmin) desc limit 10;`',
      'Also check what is not a session: `select slot_name, active, xmin, catalog_xmin from pg_replication_slots;` (a slot with an xmin), `select gid, prepared, owner from pg_prepared_xacts;` (a forgotten prepared transaction), and standbys with hot_standby_feedback running long queries.',
      'An idle-in-transaction session: terminate it (`select pg_terminate_backend(<pid>);`) once its owner agrees or it is clearly abandoned. An active query: cancel it (`pg_cancel_backend`). A forgotten prepared transaction: `rollback prepared \'<gid>\';` after checking with its owner.',
      'An autovacuum worker with a long transaction is normally harmless (it is vacuuming a large table); a wraparound vacuum must not be cancelled.',
      'Escalate when the holder is a replication slot or a prepared transaction you cannot identify, or when the transaction is a migration.',
    ],
  },
};

function shortQuery(query: string | null): string {
  if (query === null || query === '') return '';
  const flat = query.replace(/\s+/g, ' ').trim();
  return `: ${flat.length > 100 ? `${flat.slice(0, 99)}…` : flat}`;
}

/** One line per node of a lock tree, indented by depth. */
export function lockTreeLines(nodes: readonly LockTreeNode[]): string[] {
  const lines: string[] = [];
  const visit = (node: LockTreeNode): void => {
    const indent = '  '.repeat(node.depth);
    if (node.cycle) {
      lines.push(`${indent}pid ${node.pid} (deadlock cycle: already above)`);
      return;
    }
    if (node.waiter !== null) {
      const w = node.waiter;
      const on = w.relation ?? w.lockType ?? 'a lock';
      const mode = w.mode === null ? '' : ` ${w.mode} on`;
      lines.push(`${indent}pid ${w.pid} ${w.user ?? '?'} ${w.application} waits ${seconds(w.waitSeconds ?? 0)} for${mode} ${on}${shortQuery(w.query)}`);
    } else if (node.blocker !== null) {
      const b = node.blocker;
      const who = b.preparedTransaction ? 'a prepared transaction' : `${b.user ?? '?'} ${b.application ?? ''} ${b.state ?? '?'}`.replace(/\s+/g, ' ');
      lines.push(`${indent}pid ${b.pid} ${who}${b.xactSeconds === null ? '' : `, transaction open ${seconds(b.xactSeconds)}`}${shortQuery(b.query)}`);
    } else {
      lines.push(`${indent}pid ${node.pid}`);
    }
    if (node.collapsed) lines.push(`${indent}  … (shown above)`);
    node.children.forEach(visit);
  };
  nodes.forEach(visit);
  return lines;
}

/** The pids in a subtree, in tree order. */
function subtreePids(node: LockTreeNode, into: Set<number> = new Set()): Set<number> {
  into.add(node.pid);
  for (const child of node.children) subtreePids(child, into);
  return into;
}

/** Lock waits, one finding per root blocker with the sessions piled up behind it. */
export const lockWaitsCheck: Check<{ readonly warningSeconds: number; readonly criticalSeconds: number; readonly criticalWaiters: number }> = {
  id: 'lock-waits',
  title: 'Lock waits',
  description: 'Sessions waiting for a heavyweight lock, grouped by the root blocker (the session at the top of the blocking tree, which is not itself waiting). The context carries the whole tree.',
  cadence: 'fast',
  probes: ['locks'],
  defaults: { warningSeconds: 60, criticalSeconds: 300, criticalWaiters: 10 },
  levels: (t) => ({ warning: `a session waiting for a lock for ${seconds(t.warningSeconds)}`, critical: `for ${seconds(t.criticalSeconds)}, or ${t.criticalWaiters} or more sessions behind one blocker` }),
  evaluate({ results, thresholds: t }) {
    const id = 'lock-waits';
    const { snapshot, unknown } = snapshotOf(id, results, 'locks');
    if (unknown !== undefined) return [unknown];
    return lockFindings(id, snapshot, t);
  },
  runbook: {
    summary: 'Sessions are queued behind a lock. The cause is the root blocker: often an idle-in-transaction session, a long transaction, or DDL (ALTER TABLE) waiting for its own lock while everyone else queues behind it.',
    steps: [
      'The finding\'s lock tree shows the root blocker first and who waits behind it. To see it live: the Locks view, or `select pid, pg_blocking_pids(pid) as blocked_by, wait_event, now() - state_change as waiting, query from pg_stat_activity where wait_event_type = \'Lock\';`',
      'Look at the root blocker: `select pid, usename, application_name, state, now() - xact_start as xact_age, query from pg_stat_activity where pid = <pid>;`. Idle in transaction: it is almost certainly safe to terminate (`select pg_terminate_backend(<pid>);`) — its transaction rolls back.',
      'If the blocker is an active query, try `select pg_cancel_backend(<pid>);` first. If the blocker is DDL waiting for a lock (a waiter at the top of a queue), cancelling the DDL releases everyone queued behind it; rerun it later with `set lock_timeout = \'5s\'`.',
      'A blocker with pid 0 is a prepared transaction: `select * from pg_prepared_xacts;` then `commit prepared` or `rollback prepared` only with its owner\'s agreement.',
      'Escalate before terminating a blocker that is a migration, a large batch update (rollback may take as long as the work done), or anything in a distributed transaction.',
    ],
  },
};

function lockFindings(id: string, snapshot: LocksSnapshot, t: { readonly warningSeconds: number; readonly criticalSeconds: number; readonly criticalWaiters: number }): Finding[] {
  const tree = buildLockTree(snapshot);
  const waiterByPid = new Map(snapshot.waiters.map((w) => [w.pid, w]));
  const findings: Finding[] = [];
  let longest: number | null = null;
  for (const root of tree.roots) {
    const blocker = snapshot.rootBlockers.find((b) => b.pid === root.pid);
    const behind = [...subtreePids(root)].filter((pid) => pid !== root.pid).flatMap((pid) => waiterByPid.get(pid) ?? []);
    const wait = behind.reduce((max, w) => Math.max(max, w.waitSeconds ?? 0), 0);
    longest = Math.max(longest ?? 0, wait);
    const count = blocker?.waitingBehind ?? behind.length;
    const pileUp = count >= t.criticalWaiters;
    const severity = pileUp ? 'critical' : level(wait, t.warningSeconds, t.criticalSeconds);
    if (severity === 'ok') continue;
    const who = blocker === undefined ? `pid ${root.pid} (waiting in a deadlock cycle)` : blocker.preparedTransaction ? 'a prepared transaction (pid 0)' : whoIs(blocker);
    const reason = pileUp && wait < t.criticalSeconds ? `(critical: ${t.criticalWaiters} or more sessions behind one blocker)` : against(severity, t.warningSeconds, t.criticalSeconds, seconds);
    const sessions: FindingSession[] = [
      ...(blocker === undefined ? [] : [sessionContext({ ...blocker, client: null })]),
      ...behind.map((w) => sessionContext({ ...w, client: null })),
    ];
    findings.push(finding(id, {
      severity, subject: `pid ${root.pid}`, value: wait, threshold: thresholdFor(severity, t.warningSeconds, t.criticalSeconds), warningThreshold: t.warningSeconds, unit: 'seconds',
      message: `${who} blocks ${count} session${count === 1 ? '' : 's'}; the longest has waited ${seconds(wait)} ${reason}`,
      context: { sessions, lockTree: lockTreeLines([root]), details: { waitingBehind: count, blockerState: blocker?.state ?? null } },
    }));
  }
  if (findings.length > 0) return findings;
  return [finding(id, {
    severity: 'ok', subject: 'cluster', value: longest, threshold: t.warningSeconds, warningThreshold: t.warningSeconds, unit: 'seconds',
    message: snapshot.waiters.length === 0 ? 'no session waits for a lock' : `${snapshot.waiters.length} sessions wait for a lock, none for ${seconds(t.warningSeconds)} or more`,
  })];
}
