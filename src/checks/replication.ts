/** Checks on replication: standby lag, replication slots, WAL archiving, split brain. */
import { formatBytes, formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Standby } from '../probes/replication.js';
import type { Check, Finding, Severity } from './types.js';
import { finding, numberIn, recordOf, snapshotOf } from './helpers.js';
import type { NodeServerResult } from './primary.js';

const seconds = (n: number): string => formatDuration(n);
const MB = 1024 ** 2;
const GB = 1024 ** 3;

type LagThresholds = {
  readonly warningBytes: number;
  readonly warningSeconds: number;
  readonly criticalBytes: number;
  readonly criticalSeconds: number;
  /** How long a standby that disconnected is still reported. */
  readonly forgetAfterSeconds: number;
};

/** How a standby is named: its application_name, unless it is the default "walreceiver". */
function standbyName(standby: Standby): string {
  if (standby.application !== '' && standby.application !== 'walreceiver') return standby.application;
  return standby.client ?? `pid ${standby.pid}`;
}

/** The severity of a lag and the figure that decided it (bytes first). */
function lagLevel(bytes: number | null, secs: number | null, t: LagThresholds): { severity: Severity; value: number | null; threshold: number; warning: number; unit: string; reason: string } {
  const b = bytes ?? 0;
  const s = secs ?? 0;
  if (b >= t.criticalBytes) return { severity: 'critical', value: b, threshold: t.criticalBytes, warning: t.warningBytes, unit: 'bytes', reason: `(critical ≥ ${formatBytes(t.criticalBytes)})` };
  if (s >= t.criticalSeconds) return { severity: 'critical', value: s, threshold: t.criticalSeconds, warning: t.warningSeconds, unit: 'seconds', reason: `(critical ≥ ${seconds(t.criticalSeconds)})` };
  if (b >= t.warningBytes) return { severity: 'warning', value: b, threshold: t.warningBytes, warning: t.warningBytes, unit: 'bytes', reason: `(warning ≥ ${formatBytes(t.warningBytes)})` };
  if (s >= t.warningSeconds) return { severity: 'warning', value: s, threshold: t.warningSeconds, warning: t.warningSeconds, unit: 'seconds', reason: `(warning ≥ ${seconds(t.warningSeconds)})` };
  return { severity: 'ok', value: bytes, threshold: t.warningBytes, warning: t.warningBytes, unit: 'bytes', reason: '' };
}

interface LagState {
  /** Standby name → when it was last seen connected (ms). */
  readonly seen: Readonly<Record<string, number>>;
}

function lagStateOf(previous: unknown): LagState {
  const seen: Record<string, number> = {};
  for (const [name, at] of Object.entries(recordOf(recordOf(previous)?.['seen']) ?? {})) {
    const ms = numberIn(at);
    if (ms !== undefined) seen[name] = ms;
  }
  return { seen };
}

/** Replay lag of each standby (on a primary) or of this standby, and standbys that stopped streaming. */
export const replicationLagCheck: Check<LagThresholds> = {
  id: 'replication-lag',
  title: 'Replication lag',
  description: 'How far each standby\'s replay is behind, in bytes of WAL and in seconds (0 when everything received is replayed, so an idle primary does not look like lag), and standbys that are not streaming. On a standby, its own receiver and replay. Not evaluated on a primary without standbys.',
  cadence: 'fast',
  probes: ['replication'],
  defaults: { warningBytes: 100 * MB, warningSeconds: 60, criticalBytes: GB, criticalSeconds: 300, forgetAfterSeconds: 86_400 },
  levels: (t) => ({
    warning: `${formatBytes(t.warningBytes)} or ${seconds(t.warningSeconds)} behind`,
    critical: `${formatBytes(t.criticalBytes)} or ${seconds(t.criticalSeconds)} behind, or a standby not streaming (one that disconnected is reported for ${seconds(t.forgetAfterSeconds)})`,
  }),
  evaluate({ results, thresholds: t, now, previous }) {
    const id = 'replication-lag';
    const { snapshot, unknown } = snapshotOf(id, results, 'replication');
    if (unknown !== undefined) return [unknown];
    const findings: Finding[] = [];
    if (snapshot.role === 'standby') {
      const receiver = snapshot.receiver;
      const { gapBytes, delaySeconds, paused } = snapshot.replay;
      const lag = { bytes: gapBytes, seconds: delaySeconds };
      if (receiver === null || (receiver.status !== null && receiver.status !== 'streaming')) {
        return [finding(id, {
          severity: 'critical', subject: 'standby', value: null, threshold: null, warningThreshold: null, unit: '',
          message: receiver === null ? 'this standby is not streaming: no WAL receiver runs (disconnected, or restoring from the archive)' : `this standby is not streaming: its WAL receiver is ${receiver.status ?? '?'}`,
          context: { lag, details: { senderHost: receiver?.senderHost ?? null, slot: receiver?.slotName ?? null } },
        })];
      }
      const decided = lagLevel(gapBytes, delaySeconds, t);
      return [finding(id, {
        severity: decided.severity, subject: 'standby', value: decided.value, threshold: decided.threshold, warningThreshold: decided.warning, unit: decided.unit,
        message: `this standby's replay is ${formatBytes(gapBytes)} and ${seconds(delaySeconds ?? 0)} behind what it received${paused ? ', replay is paused' : ''}${decided.reason === '' ? '' : ` ${decided.reason}`}`,
        context: { lag, details: { senderHost: receiver.senderHost, lastMessageAgeSeconds: receiver.lastMessageAgeSeconds, paused: paused ? 'yes' : 'no' } },
      })];
    }
    const state = lagStateOf(previous);
    const connected = new Set(snapshot.standbys.map(standbyName));
    for (const [name, lastSeen] of Object.entries(state.seen)) {
      const gone = (now.getTime() - lastSeen) / 1000;
      if (connected.has(name) || gone > t.forgetAfterSeconds) continue;
      findings.push(finding(id, {
        severity: 'critical', subject: `replica ${name}`, value: null, threshold: null, warningThreshold: null, unit: '',
        message: `replica ${name} is no longer connected (last seen ${seconds(gone)} ago)`,
      }));
    }
    for (const standby of snapshot.standbys) {
      const name = standbyName(standby);
      const lag = standby.lag;
      if (standby.state !== null && standby.state !== 'streaming') {
        findings.push(finding(id, {
          severity: 'critical', subject: `replica ${name}`, value: lag.bytes, threshold: null, warningThreshold: null, unit: 'bytes',
          message: `replica ${name} (${standby.client ?? '?'}) is not streaming: ${standby.state}, ${formatBytes(lag.bytes)} behind`,
          context: { lag, details: { state: standby.state, syncState: standby.syncState } },
        }));
        continue;
      }
      if (lag.bytes === null && lag.seconds === null) {
        findings.push(finding(id, {
          severity: 'unknown', subject: `replica ${name}`, value: null, threshold: null, warningThreshold: null, unit: '',
          message: `cannot evaluate: the lag of replica ${name} is not visible to this role (grant it pg_monitor)`,
        }));
        continue;
      }
      const decided = lagLevel(lag.bytes, lag.seconds, t);
      if (decided.severity === 'ok') continue;
      findings.push(finding(id, {
        severity: decided.severity, subject: `replica ${name}`, value: decided.value, threshold: decided.threshold, warningThreshold: decided.warning, unit: decided.unit,
        message: `replica ${name} (${standby.client ?? '?'}) replay is ${formatBytes(lag.bytes)} and ${seconds(lag.seconds ?? 0)} behind ${decided.reason}`,
        context: { lag, details: { syncState: standby.syncState, replyAgeSeconds: standby.replyAgeSeconds } },
      }));
    }
    if (findings.length > 0) return findings;
    if (snapshot.standbys.length === 0) return [];
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: Math.max(...snapshot.standbys.map((s) => s.lag.bytes ?? 0)), threshold: t.warningBytes, warningThreshold: t.warningBytes, unit: 'bytes',
      message: `${snapshot.standbys.length} standbys streaming, none ${formatBytes(t.warningBytes)} or ${seconds(t.warningSeconds)} behind`,
    })];
  },
  nextState({ results, now, previous }) {
    const state = lagStateOf(previous);
    const result = resultOf(results, 'replication');
    if (result.status !== 'ok' || result.snapshot.role !== 'primary') return state;
    const seen = { ...state.seen };
    for (const standby of result.snapshot.standbys) seen[standbyName(standby)] = now.getTime();
    return { seen } satisfies LagState;
  },
  runbook: {
    summary: 'A standby is behind the primary, or not streaming at all. Reads from it are stale, a failover to it would lose or delay data, and the primary may be keeping WAL for it.',
    steps: [
      'On the primary: `select application_name, client_addr, state, sync_state, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)) as replay_behind, write_lag, flush_lag, replay_lag from pg_stat_replication;`',
      'Which part lags? write/flush lag high: the network or the standby\'s disk. Only replay lag high: replay is slow or blocked — on the standby check `select pg_is_wal_replay_paused();` (resume with `select pg_wal_replay_resume();` if someone paused it) and long queries that conflict with replay (max_standby_streaming_delay).',
      'Not streaming / disconnected: on the standby, the server log ("could not connect to the primary server", "requested WAL segment has already been removed") and `select status, sender_host, last_msg_receipt_time from pg_stat_wal_receiver;`. A removed segment means the standby must be restored from the archive (restore_command) or rebuilt.',
      'A large, bursty lag during a bulk load or index build that shrinks afterwards needs no action. A lag that grows steadily does.',
      'Escalate when a synchronous standby is down (commits on the primary may hang), or when the standby needs rebuilding.',
    ],
  },
};

/** Replication slots that are lost, inactive, or retain too much WAL. */
export const replicationSlotsCheck: Check<{ readonly inactiveSeconds: number; readonly retainedBytes: number }> = {
  id: 'replication-slots',
  title: 'Replication slots',
  description: 'Slots keep WAL (and, with an xmin, dead rows) until their consumer confirms it. An inactive slot keeps it forever: pg_wal fills the disk. A lost slot (wal_status lost) has already lost WAL its consumer needs. Not evaluated when there is no slot.',
  cadence: 'fast',
  probes: ['replication'],
  defaults: { inactiveSeconds: 900, retainedBytes: 5 * GB },
  levels: (t) => ({ warning: `a slot inactive for ${seconds(t.inactiveSeconds)}, or retaining ${formatBytes(t.retainedBytes)} of WAL`, critical: 'a slot lost (wal_status lost)' }),
  evaluate({ results, thresholds: t, now }) {
    const id = 'replication-slots';
    const { snapshot, unknown } = snapshotOf(id, results, 'replication');
    if (unknown !== undefined) return [unknown];
    const findings: Finding[] = [];
    for (const slot of snapshot.slots) {
      const subject = `slot ${slot.name}`;
      const retained = slot.retainedBytes;
      const details = { type: slot.type, database: slot.database, walStatus: slot.walStatus, retainedBytes: retained, xminAge: slot.xminAge };
      if (slot.walStatus === 'lost') {
        findings.push(finding(id, {
          severity: 'critical', subject, value: retained, threshold: null, warningThreshold: t.retainedBytes, unit: 'bytes',
          message: `slot ${slot.name} is lost: the WAL its consumer needs was removed, it can no longer catch up`, context: { details },
        }));
        continue;
      }
      const inactiveFor = slot.active || slot.inactiveSince === null ? null : (now.getTime() - slot.inactiveSince.getTime()) / 1000;
      const inactive = inactiveFor !== null && inactiveFor >= t.inactiveSeconds;
      const large = retained !== null && retained >= t.retainedBytes;
      if (!inactive && !large) continue;
      const parts = [
        inactive ? `inactive for ${seconds(inactiveFor ?? 0)}` : slot.active ? 'active' : 'inactive',
        `retaining ${formatBytes(retained)} of WAL`,
      ];
      const reason = large ? `(warning ≥ ${formatBytes(t.retainedBytes)})` : `(warning: inactive ≥ ${seconds(t.inactiveSeconds)})`;
      findings.push(finding(id, {
        severity: 'warning', subject, value: large ? retained : inactiveFor, threshold: large ? t.retainedBytes : t.inactiveSeconds,
        warningThreshold: large ? t.retainedBytes : t.inactiveSeconds, unit: large ? 'bytes' : 'seconds',
        message: `slot ${slot.name} (${slot.type}) ${parts.join(', ')} ${reason}`, context: { details },
      }));
    }
    if (findings.length > 0) return findings;
    if (snapshot.slots.length === 0) return [];
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: Math.max(...snapshot.slots.map((s) => s.retainedBytes ?? 0)), threshold: t.retainedBytes, warningThreshold: t.retainedBytes, unit: 'bytes',
      message: `${snapshot.slots.length} slots, none lost, inactive for ${seconds(t.inactiveSeconds)} or retaining ${formatBytes(t.retainedBytes)}`,
    })];
  },
  runbook: {
    summary: 'A replication slot is not being consumed, or has fallen so far behind that it holds a lot of WAL. The WAL stays in pg_wal until the slot advances; if the disk fills, the primary stops.',
    steps: [
      'Look: `select slot_name, slot_type, database, active, active_pid, wal_status, pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) as retained, xmin, catalog_xmin from pg_replication_slots;` and the free space of the pg_wal file system (`df -h <datadir>/pg_wal`).',
      'Who should consume it? A physical slot belongs to a standby (check the replication-lag finding for that standby); a logical slot to a subscriber or a CDC tool (Debezium, etc.). Ask whether that consumer still exists.',
      'If the consumer is just down, restart it: it resumes from the slot. If it is gone for good, drop the slot to release the WAL: `select pg_drop_replication_slot(\'<name>\');` — the consumer will then need a full resync, so confirm with its owner first.',
      'A lost slot cannot be repaired: its standby must be rebuilt (or restore WAL from the archive), its logical subscriber resynchronized. Drop the lost slot once the owner knows.',
      'Escalate immediately when the pg_wal file system is above 80 % and the consumer cannot be brought back quickly: the choice to drop the slot belongs to the slot\'s owner, but the primary stopping affects everyone. `max_slot_wal_keep_size` bounds this in future.',
    ],
  },
};

interface ArchiverState {
  /** When failing was first seen (ms), and for which segment. */
  readonly failingSince: number | null;
}

/** WAL archiving that fails, and segments queued for the archiver. */
export const walArchivingCheck: Check<{ readonly criticalFailingSeconds: number; readonly warningWaitingSegments: number }> = {
  id: 'wal-archiving',
  title: 'WAL archiving',
  description: 'Whether archive_command (or archive_library) succeeds, from pg_stat_archiver, and how many segments wait to be archived (.ready files). Failing archiving breaks point-in-time recovery and fills pg_wal. Not evaluated when archive_mode is off or on a standby.',
  cadence: 'normal',
  probes: ['replication'],
  defaults: { criticalFailingSeconds: 300, warningWaitingSegments: 10 },
  levels: (t) => ({ warning: `the last archive attempt failed, or more than ${t.warningWaitingSegments} segments waiting`, critical: `failing for more than ${seconds(t.criticalFailingSeconds)}` }),
  evaluate({ results, thresholds: t, now, previous }) {
    const id = 'wal-archiving';
    const { snapshot, unknown } = snapshotOf(id, results, 'replication');
    if (unknown !== undefined) return [unknown];
    if (snapshot.role !== 'primary' || snapshot.archiver.mode === 'off') return [];
    const a = snapshot.archiver;
    const findings: Finding[] = [];
    const since = archiverStateAfter(a.failing, previous, now).failingSince;
    const failingFor = since === null ? 0 : (now.getTime() - since) / 1000;
    const details = { lastFailedWal: a.lastFailedWal, lastArchivedWal: a.lastArchivedWal, failedCount: a.failedCount, lastArchivedSeconds: a.lastArchivedSeconds };
    if (a.failing) {
      const critical = failingFor > t.criticalFailingSeconds;
      findings.push(finding(id, {
        severity: critical ? 'critical' : 'warning', subject: 'archiver', value: failingFor, threshold: critical ? t.criticalFailingSeconds : 0, warningThreshold: 0, unit: 'seconds',
        message: `archiving ${a.lastFailedWal ?? 'WAL'} fails, ${failingFor < 1 ? 'first seen failing now' : `seen failing for ${seconds(failingFor)}`}; last success ${a.lastArchivedSeconds === null ? 'never' : `${seconds(a.lastArchivedSeconds)} ago`} ${critical ? `(critical > ${seconds(t.criticalFailingSeconds)})` : '(warning: failing)'}`,
        context: { details },
      }));
    } else {
      findings.push(finding(id, {
        severity: 'ok', subject: 'archiver', value: 0, threshold: 0, warningThreshold: 0, unit: 'seconds',
        message: `archiving works; last success ${a.lastArchivedSeconds === null ? 'never (nothing archived yet)' : `${seconds(a.lastArchivedSeconds)} ago`}`, context: { details },
      }));
    }
    if (a.waitingSegments === null) {
      findings.push(finding(id, { severity: 'unknown', subject: 'archive queue', value: null, threshold: null, warningThreshold: null, unit: '', message: `cannot evaluate: ${a.waitingUnknownReason ?? 'the .ready files were not counted'}` }));
    } else {
      const backlog = a.waitingSegments > t.warningWaitingSegments;
      findings.push(finding(id, {
        severity: backlog ? 'warning' : 'ok', subject: 'archive queue', value: a.waitingSegments, threshold: t.warningWaitingSegments, warningThreshold: t.warningWaitingSegments, unit: 'segments',
        message: `${a.waitingSegments} WAL segments waiting to be archived (warning > ${t.warningWaitingSegments})`,
      }));
    }
    return findings;
  },
  nextState({ results, previous, now }) {
    const result = resultOf(results, 'replication');
    if (result.status !== 'ok' || result.snapshot.role !== 'primary') return previous;
    return archiverStateAfter(result.snapshot.archiver.failing, previous, now);
  },
  runbook: {
    summary: 'archive_command is failing, or cannot keep up. Until it succeeds, WAL accumulates in pg_wal (the disk may fill and stop the server) and point-in-time recovery past the last archived segment is impossible.',
    steps: [
      'Look: `select last_archived_wal, last_archived_time, last_failed_wal, last_failed_time, failed_count from pg_stat_archiver;` and `select count(*) from pg_ls_archive_statusdir() where name like \'%.ready\';`',
      'Find the error in the server log: `grep -E "archive command failed|archive_command" <logfile> | tail` shows the command\'s exit code and its stderr. Common causes: the archive storage is full or unreachable, expired credentials, a permission change, or a file that already exists with different content (never overwrite it: investigate, see docs on archive safety).',
      'Run the archive command by hand as the postgres user for the failing segment (substitute %p and %f) to see the real error. Fix the cause; PostgreSQL retries on its own and catches up.',
      'Watch pg_wal\'s file system (`df -h <datadir>/pg_wal`). Never delete files from pg_wal by hand: that corrupts the cluster.',
      'Escalate when it has failed for more than a few minutes and the cause is not obvious, or pg_wal is filling: a backup/storage engineer must fix the archive target. Take a fresh base backup once archiving works again if segments were lost.',
    ],
  },
};

/** The archiver state after seeing `failing` now: when the current failure run began. */
function archiverStateAfter(failing: boolean, previous: unknown, now: Date): ArchiverState {
  if (!failing) return { failingSince: null };
  return { failingSince: numberIn(recordOf(previous)?.['failingSince']) ?? now.getTime() };
}

/** The subject of the split-brain finding. */
export const splitBrainSubject = 'primaries';

/**
 * Split brain (DESIGN §7 rule 9), a cluster-wide finding (node "*") from the latest server result
 * of every node of a cluster with several nodes: critical when two or more reachable nodes are out
 * of recovery, ok when at most one is. Undefined for a single-node cluster and while a node has not
 * been evaluated yet. A node that cannot be reached counts as not writable: nothing says it is.
 */
export function splitBrainFinding(nodes: readonly NodeServerResult[]): Finding | undefined {
  if (nodes.length < 2) return undefined;
  if (nodes.some((entry) => entry.server === undefined || entry.server.status === 'pending')) return undefined;
  const primaries = nodes.flatMap((entry) => (entry.server?.status === 'ok' && entry.server.snapshot.role === 'primary' ? [{ node: entry.node, snapshot: entry.server.snapshot }] : []));
  const details = Object.fromEntries(primaries.map((entry) => [entry.node, `primary on timeline ${entry.snapshot.timeline ?? '?'}, system ${entry.snapshot.systemIdentifier}`]));
  if (primaries.length < 2) {
    return finding('split-brain', {
      severity: 'ok', subject: splitBrainSubject, value: primaries.length, threshold: 2, warningThreshold: null, unit: 'count',
      message: primaries.length === 1 ? `one writable primary: ${primaries[0]?.node ?? ''}` : 'no reachable node accepts writes',
      context: { details },
    });
  }
  // The newest timeline is usually the promoted standby; the older one the primary that should have stopped.
  const ordered = [...primaries].sort((a, b) => (a.snapshot.timeline ?? -1) - (b.snapshot.timeline ?? -1));
  const described = ordered.map((entry) => `${entry.node} (timeline ${entry.snapshot.timeline ?? '?'})`).join(', ');
  const oldest = ordered[0];
  const newest = ordered[ordered.length - 1];
  const hint = oldest !== undefined && newest !== undefined && (oldest.snapshot.timeline ?? -1) < (newest.snapshot.timeline ?? -1)
    ? `: ${oldest.node} is on the oldest timeline, probably the former primary: stop writes there`
    : '';
  return finding('split-brain', {
    severity: 'critical', subject: splitBrainSubject, value: primaries.length, threshold: 2, warningThreshold: null, unit: 'count',
    message: `split brain: ${primaries.length} nodes accept writes: ${described}${hint}`,
    context: { details },
  });
}

/**
 * Split brain: two writable primaries in one cluster. Nothing to say per node (a node only sees
 * itself); `pgwarden --watch` evaluates splitBrainFinding() over the server results of all the
 * cluster's nodes after each round, as the cluster-wide node "*".
 */
export const splitBrainCheck: Check<Record<string, never>> = {
  id: 'split-brain',
  title: 'Split brain',
  description: 'Two or more nodes of one cluster are out of recovery (pg_is_in_recovery() false on each): both accept writes, and the writes of one are missing on the other. Evaluated per cluster of several nodes (node `*`) from the server probe of every node; a node that cannot be reached does not count.',
  cadence: 'fast',
  probes: ['server'],
  defaults: {},
  levels: () => ({ warning: 'never (it is critical at once)', critical: 'two or more reachable nodes accept writes' }),
  evaluate({ results }) {
    // Per node there is nothing to say but whether the server probe, which the cluster-wide finding reads, works.
    const { unknown } = snapshotOf('split-brain', results, 'server');
    return unknown === undefined ? [] : [unknown];
  },
  runbook: {
    summary: 'More than one node of the cluster accepts writes. Clients that reach the wrong one write data the other does not have, and the two histories diverge further every second. This must never happen (DESIGN §7 rule 9); stop the damage first, investigate after.',
    steps: [
      'Look: on every node, `select pg_is_in_recovery(), timeline_id from pg_control_checkpoint();` and in the Replication view the topology tree. The node on the newer timeline was promoted last; the other is usually the former primary that came back (or never stopped).',
      'Decide which node stays primary: normally the one the clients and PgBouncer point at now, on the newest timeline. Point PgBouncer (and every client path) at it only: `RELOAD` after editing its database entry.',
      'Fence the other one at once: stop it (`pg_ctl stop -m fast -D <datadir>`), or at least block writes (`ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf();` and terminate its client sessions). Do not let it take writes while you think.',
      'Save what it wrote alone before rejoining it: the WAL after the fork point (its timeline history), or a `pg_dump` of the affected tables, so the application owners can reconcile those rows.',
      'Rejoin it only as a standby of the surviving primary: `pg_rewind --target-pgdata=<datadir> --source-server="host=<primary> …"`, then `standby.signal` and `primary_conninfo`, then start it (a fresh clone if pg_rewind fails). Never the other way round.',
      'Escalate at once: a split brain means writes went to both nodes; the application owners must know which rows may be missing or conflicting.',
    ],
  },
};
