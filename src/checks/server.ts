/** Checks on the server as a whole: can we reach it, did it restart or change role, are slots left, does the pooler queue. */
import { formatDuration, formatPercent } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Check, Finding } from './types.js';
import { against, finding, level, numberIn, recordOf, snapshotOf, thresholdFor, unknownFinding } from './helpers.js';

const seconds = (n: number): string => formatDuration(n);

/** Connect and SELECT: the server probe's round trip, or the error that stopped it. */
export const connectivityCheck: Check<{ readonly warningSeconds: number; readonly criticalSeconds: number }> = {
  id: 'connectivity',
  title: 'Connectivity',
  description: 'Whether the server answers the server probe\'s queries, and how fast (the round trip of a cheap SELECT on an open connection, including a reconnect when one was needed).',
  cadence: 'fast',
  probes: ['server'],
  defaults: { warningSeconds: 1, criticalSeconds: 5 },
  levels: (t) => ({ warning: `the server answers in ${seconds(t.warningSeconds)} or more`, critical: `the connection or query fails, or takes ${seconds(t.criticalSeconds)} or more` }),
  evaluate({ results, thresholds: t }) {
    const result = resultOf(results, 'server');
    if (result.status === 'error') {
      return [finding('connectivity', {
        severity: 'critical', subject: 'cluster', value: null, threshold: null, warningThreshold: t.warningSeconds, unit: 'seconds',
        message: `the server does not answer: ${result.error.message}`,
        context: { details: { sqlstate: result.error.sqlstate ?? null, hint: result.error.hint ?? null, since: result.since.toISOString() } },
      })];
    }
    if (result.status !== 'ok') return [snapshotOf('connectivity', results, 'server').unknown ?? unknownFinding('connectivity', 'no server result')];
    const value = result.durationMs / 1000;
    const severity = level(value, t.warningSeconds, t.criticalSeconds);
    return [finding('connectivity', {
      severity, subject: 'cluster', value, threshold: thresholdFor(severity, t.warningSeconds, t.criticalSeconds), warningThreshold: t.warningSeconds, unit: 'seconds',
      message: `the server answered in ${seconds(value)} ${against(severity, t.warningSeconds, t.criticalSeconds, seconds)}`,
    })];
  },
  runbook: {
    summary: 'pgwarden could not run its queries on the server, or they were slow. Either the server is down or unreachable, or it is so loaded that a trivial query waits.',
    steps: [
      'From the pgwarden host: `pg_isready -h <host> -p <port>` and `psql "<dsn>" -c "select 1"`. A refusal or timeout points at the network, the server process or max_connections; an authentication error at pg_hba.conf or the password.',
      'On the database host: `systemctl status postgresql*` (or `pg_ctl status -D <datadir>`), then the end of the server log for FATAL/PANIC lines, "could not fork", "out of memory" or "No space left on device".',
      'If it answers but slowly: check the host (`uptime`, `vmstat 1 5`, `iostat -x 1 5`) and the Activity view for a pile-up of active sessions or lock waits.',
      'Do not restart a server that is in crash recovery ("database system is starting up" / "in recovery"): it will come back on its own; restarting only starts recovery again.',
      'Escalate at once when it is the primary and it has not answered for two evaluations: applications are down. Escalate to the network team when psql works from the database host but not from here.',
    ],
  },
};

interface RoleState {
  readonly role: string;
  readonly timeline: number | null;
  /** When the role or timeline last changed (ms since epoch), and from what. */
  readonly changedAt: number | null;
  readonly from: string | null;
}

function roleStateOf(previous: unknown): RoleState | undefined {
  const record = recordOf(previous);
  if (record === undefined || typeof record['role'] !== 'string') return undefined;
  return {
    role: record['role'],
    timeline: numberIn(record['timeline']) ?? null,
    changedAt: numberIn(record['changedAt']) ?? null,
    from: typeof record['from'] === 'string' ? record['from'] : null,
  };
}

/** The role state after seeing `role` on `timeline` now. */
function roleStateAfter(role: string, timeline: number | null, previous: unknown, now: Date): RoleState {
  const before = roleStateOf(previous);
  if (before === undefined) return { role, timeline, changedAt: null, from: null };
  if (before.role !== role || (before.timeline !== null && timeline !== null && before.timeline !== timeline)) {
    return { role, timeline, changedAt: now.getTime(), from: describeRole(before.role, before.timeline) };
  }
  return { ...before, role, timeline };
}

function describeRole(role: string, timeline: number | null): string {
  return timeline === null ? role : `${role} on timeline ${timeline}`;
}

/** A restart (short uptime) and a role or timeline change since the previous evaluation, reported for `recentSeconds`. */
export const restartCheck: Check<{ readonly recentSeconds: number }> = {
  id: 'restart',
  title: 'Restart or role change',
  description: 'The server restarted recently, or became primary or standby (or changed timeline, i.e. was promoted) since an earlier evaluation.',
  cadence: 'fast',
  probes: ['server'],
  defaults: { recentSeconds: 600 },
  levels: (t) => ({ warning: `up for less than ${seconds(t.recentSeconds)}, or the role or timeline changed in that time`, critical: 'none here (no reachable primary is a cluster-level alert)' }),
  evaluate({ results, thresholds: t, now, previous }) {
    const { snapshot, unknown } = snapshotOf('restart', results, 'server');
    if (unknown !== undefined) return [unknown];
    const uptime = snapshot.uptimeSeconds;
    const restarted = uptime < t.recentSeconds;
    const findings: Finding[] = [finding('restart', {
      severity: restarted ? 'warning' : 'ok', subject: 'uptime', value: uptime, threshold: t.recentSeconds, warningThreshold: t.recentSeconds, unit: 'seconds',
      message: restarted
        ? `the server restarted ${seconds(uptime)} ago, at ${snapshot.startedAt.toISOString()} (warning < ${seconds(t.recentSeconds)})`
        : `up for ${seconds(uptime)} (warning < ${seconds(t.recentSeconds)})`,
    })];
    const state = roleStateAfter(snapshot.role, snapshot.timeline, previous, now);
    const current = describeRole(snapshot.role, snapshot.timeline);
    const sinceChange = state.changedAt === null ? null : (now.getTime() - state.changedAt) / 1000;
    const changed = sinceChange !== null && sinceChange < t.recentSeconds;
    findings.push(finding('restart', {
      severity: changed ? 'warning' : 'ok', subject: 'role', value: sinceChange, threshold: t.recentSeconds, warningThreshold: t.recentSeconds, unit: 'seconds',
      message: changed
        ? `the role changed from ${state.from ?? '?'} to ${current} ${sinceChange < 1 ? 'just now' : `${seconds(sinceChange)} ago`} (warning < ${seconds(t.recentSeconds)})`
        : current,
      context: { details: { role: snapshot.role, timeline: snapshot.timeline, previousRole: state.from } },
    }));
    return findings;
  },
  nextState({ results, now, previous }) {
    const server = resultOf(results, 'server');
    return server.status === 'ok' ? roleStateAfter(server.snapshot.role, server.snapshot.timeline, previous, now) : roleStateOf(previous);
  },
  runbook: {
    summary: 'The server restarted, or its role changed: a standby was promoted, or a former primary came back as a standby. Either can be planned; if not, find out why before it happens again.',
    steps: [
      'Look at `select pg_postmaster_start_time(), pg_is_in_recovery(), timeline_id from pg_control_checkpoint();` and the server log around the start time: a crash shows "terminated by signal", "server process ... was terminated", or the kernel OOM killer in `journalctl -k | grep -i oom`.',
      'For a role change: was there a planned switchover or a failover by the HA manager (Patroni, repmgr, pg_auto_failover)? Check its log and `patronictl list` (or equivalent). Make sure exactly one node is primary: `select pg_is_in_recovery()` on each node.',
      'After a promotion, check that the applications and the pooler point at the new primary and that the old primary is fenced (stopped, or rejoined as a standby with pg_rewind). Two writable primaries is a split brain: stop the old one first.',
      'After an unplanned restart, the caches are cold: expect slow queries for a few minutes. Check the Replication view: standbys must reconnect.',
      'Escalate when the restart was a crash (signal, PANIC, OOM) or the role change was not planned.',
    ],
  },
};

/** Client connections against the slots ordinary roles can use. */
export const connectionsCheck: Check<{ readonly warningFraction: number; readonly criticalFraction: number; readonly criticalSlotsLeft: number }> = {
  id: 'connection-saturation',
  title: 'Connection saturation',
  description: 'Client backends against max_connections minus the reserved slots (pgwarden\'s own sessions count: they hold slots too). When no slot is left, new connections fail with "sorry, too many clients already".',
  cadence: 'fast',
  probes: ['connections'],
  defaults: { warningFraction: 0.8, criticalFraction: 0.9, criticalSlotsLeft: 5 },
  levels: (t) => ({
    warning: `${formatPercent(t.warningFraction, 0)} of the usable slots in use`,
    critical: `${formatPercent(t.criticalFraction, 0)} in use, or fewer than ${t.criticalSlotsLeft} slots left`,
  }),
  evaluate({ results, thresholds: t }) {
    const { snapshot, unknown } = snapshotOf('connection-saturation', results, 'connections');
    if (unknown !== undefined) return [unknown];
    if (snapshot.usedFraction === null) return [unknownFinding('connection-saturation', `no usable connection slots (max_connections ${snapshot.maxConnections}, ${snapshot.reservedSlots} reserved)`)];
    const fraction = snapshot.usedFraction;
    const fewLeft = snapshot.slotsLeft < t.criticalSlotsLeft;
    const severity = fewLeft ? 'critical' : level(fraction, t.warningFraction, t.criticalFraction);
    const reason = fewLeft && fraction < t.criticalFraction ? `(critical: fewer than ${t.criticalSlotsLeft} slots left)` : against(severity, t.warningFraction, t.criticalFraction, (n) => formatPercent(n));
    const top = (entries: readonly { readonly name: string | null; readonly count: number }[]): string =>
      entries.slice(0, 3).map((entry) => `${entry.name ?? '(none)'} ${entry.count}`).join(', ');
    return [finding('connection-saturation', {
      severity, subject: 'cluster', value: fraction, threshold: thresholdFor(severity, t.warningFraction, t.criticalFraction), warningThreshold: t.warningFraction, unit: 'fraction',
      message: `${snapshot.usedSlots} of ${snapshot.usableSlots} usable connection slots in use (${formatPercent(fraction)}, ${snapshot.slotsLeft} left) ${reason}`,
      context: { details: { byUser: top(snapshot.byUser.entries), byApplication: top(snapshot.byApplication.entries), byState: top(snapshot.byState.entries), maxConnections: snapshot.maxConnections } },
    })];
  },
  runbook: {
    summary: 'Client connections are close to max_connections. When the last ordinary slot is taken, every new connection is refused.',
    steps: [
      'See who holds the slots: `select usename, application_name, client_addr, state, count(*) from pg_stat_activity where backend_type = \'client backend\' group by 1,2,3,4 order by 5 desc limit 20;` (the finding\'s details show the top users and applications).',
      'Many `idle` sessions from one application: its pool is too large or leaking; ask the owners to lower the pool size, or put PgBouncer in front. Many `idle in transaction`: see the idle-in-transaction runbook.',
      'Many `active` sessions: the server is slow and clients open more connections to compensate. Look at lock waits and long queries first; raising max_connections makes this worse.',
      'To free slots now, terminate idle sessions of the offending application (Activity view, or `select pg_terminate_backend(pid) from pg_stat_activity where application_name = \'<app>\' and state = \'idle\' and state_change < now() - interval \'10 minutes\';`). Idle sessions are safe to end: the application reconnects.',
      'Raising max_connections needs a restart and memory (each backend uses work_mem per sort): plan it, do not do it at 3 a.m. Escalate to the application owners when one application holds most slots.',
    ],
  },
};

/** The PgBouncer admin console's pseudo-database (its pool holds only console sessions). */
const adminDatabase = 'pgbouncer';

/** Clients queued in PgBouncer pools, and how long the oldest has waited. */
export const poolerCheck: Check<{ readonly waitingClients: number; readonly criticalMaxWaitSeconds: number }> = {
  id: 'pooler',
  title: 'Pooler (PgBouncer) waits',
  description: 'Clients waiting in a PgBouncer pool for a server connection: the pool is too small or the server connections are busy. Not evaluated when no PgBouncer is configured.',
  cadence: 'fast',
  probes: ['pgbouncer'],
  defaults: { waitingClients: 1, criticalMaxWaitSeconds: 30 },
  levels: (t) => ({ warning: `${t.waitingClients} or more clients waiting in a pool`, critical: `the oldest waiting client has waited ${seconds(t.criticalMaxWaitSeconds)} or more` }),
  evaluate({ results, thresholds: t }) {
    const result = resultOf(results, 'pgbouncer');
    // No PgBouncer configured for this cluster: nothing to check, not an unknown.
    if (result.status === 'unsupported' && result.unsupported.kind === 'config') return [];
    const { snapshot, unknown } = snapshotOf('pooler', results, 'pgbouncer');
    if (unknown !== undefined) return [unknown];
    const findings: Finding[] = [];
    for (const pool of snapshot.pools) {
      if (pool.database === adminDatabase) continue;
      const critical = pool.maxWaitSeconds >= t.criticalMaxWaitSeconds;
      if (!critical && pool.clWaiting < t.waitingClients) continue;
      findings.push(finding('pooler', {
        severity: critical ? 'critical' : 'warning', subject: `pool ${pool.database}/${pool.user}`, value: pool.maxWaitSeconds,
        threshold: critical ? t.criticalMaxWaitSeconds : null, warningThreshold: null, unit: 'seconds',
        message: `pool ${pool.database}/${pool.user}: ${pool.clWaiting} clients waiting, the oldest for ${seconds(pool.maxWaitSeconds)}, ${pool.svActive} server connections active, ${pool.svIdle} idle ${critical ? `(critical ≥ ${seconds(t.criticalMaxWaitSeconds)})` : `(warning ≥ ${t.waitingClients} waiting)`}`,
        context: { details: { clientsActive: pool.clActive, clientsWaiting: pool.clWaiting, serversActive: pool.svActive, serversIdle: pool.svIdle, poolMode: pool.poolMode } },
      }));
    }
    if (findings.length > 0) return findings;
    return [finding('pooler', {
      severity: 'ok', subject: 'cluster', value: snapshot.totals.maxWaitSeconds, threshold: null, warningThreshold: null, unit: 'seconds',
      message: `no client waiting in ${snapshot.pools.filter((pool) => pool.database !== adminDatabase).length} pools`,
    })];
  },
  runbook: {
    summary: 'Clients are queued in PgBouncer because every server connection of their pool is busy. Queries wait before they even reach PostgreSQL.',
    steps: [
      'On the admin console (`psql -p 6432 -U pgbouncer pgbouncer`): `SHOW POOLS;` (cl_waiting, sv_active, maxwait) and `SHOW SERVERS;` to see what the busy server connections run.',
      'Match the busy servers to PostgreSQL sessions by their pid (remote_pid in SHOW SERVERS) in the Activity view: long queries or sessions stuck in a lock wait hold the pool.',
      'If the server connections are idle in transaction in transaction pooling mode, the application holds transactions open; see the idle-in-transaction runbook.',
      'If the database is healthy and simply busy, raise default_pool_size (or the pool\'s pool_size) with `RELOAD` after editing pgbouncer.ini — only while PostgreSQL has free connection slots (see connection-saturation).',
      'Escalate when maxwait keeps growing for several minutes: clients are timing out.',
    ],
  },
};
