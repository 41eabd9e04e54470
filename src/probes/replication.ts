/**
 * Replication as each side sees it: on a primary, its standbys (positions, byte distances, lag),
 * its slots and the WAL archiver; on a standby, its WAL receiver, replay progress, slots and the
 * standbys that cascade from it.
 */
import type { Row } from '../db/types.js';
import type { Probe } from './types.js';
import { boolean, booleanOrNull, dateOrNull, number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

/**
 * Lag of one standby as its upstream measures it. Distances are bytes behind the upstream's WAL
 * position: a primary's current one, a cascading standby's last received or replayed one.
 */
export interface Standby {
  readonly pid: number;
  readonly application: string;
  /** Client address, "local" for a Unix socket. */
  readonly client: string | null;
  /** startup, catchup, streaming, backup, stopping; null when this role may not see walsender details. */
  readonly state: string | null;
  /** async, potential, sync, quorum. */
  readonly syncState: string | null;
  readonly syncPriority: number | null;
  readonly sentLsn: string | null;
  readonly writeLsn: string | null;
  readonly flushLsn: string | null;
  readonly replayLsn: string | null;
  readonly sentBytes: number | null;
  readonly writeBytes: number | null;
  readonly flushBytes: number | null;
  readonly replayBytes: number | null;
  /** Seconds; 0 once the standby has written everything (the server's figure goes stale or null when idle). */
  readonly writeLagSeconds: number | null;
  /** Seconds; 0 once the standby has flushed everything. */
  readonly flushLagSeconds: number | null;
  /** Seconds; 0 once the standby has replayed everything. */
  readonly replayLagSeconds: number | null;
  /** Seconds since the standby's last reply (PostgreSQL 12+). */
  readonly replyAgeSeconds: number | null;
  /** The figure checks use: how far replay is behind, in bytes and in seconds. */
  readonly lag: { readonly bytes: number | null; readonly seconds: number | null };
}

export interface ReplicationSlot {
  readonly name: string;
  /** physical or logical. */
  readonly type: string;
  /** The output plugin of a logical slot. */
  readonly plugin: string | null;
  /** The database of a logical slot. */
  readonly database: string | null;
  readonly temporary: boolean;
  readonly active: boolean;
  readonly activePid: number | null;
  readonly restartLsn: string | null;
  readonly confirmedFlushLsn: string | null;
  /** reserved, extended, unreserved, lost (PostgreSQL 13+). */
  readonly walStatus: string | null;
  /** Bytes that can still be written before this slot loses WAL (13+; null when unlimited). */
  readonly safeWalSizeBytes: number | null;
  /** WAL kept for this slot: bytes from its restart_lsn to the node's current position. */
  readonly retainedBytes: number | null;
  readonly xminAge: number | null;
  readonly catalogXminAge: number | null;
  /**
   * Since when the slot is inactive: the server's inactive_since on 17+; before 17, when this probe
   * first saw it inactive (so at most that old). Null while active.
   */
  readonly inactiveSince: Date | null;
}

export interface Archiver {
  /** archive_mode: off, on, always. */
  readonly mode: string;
  readonly archivedCount: number;
  readonly lastArchivedWal: string | null;
  readonly lastArchivedAt: Date | null;
  readonly lastArchivedSeconds: number | null;
  readonly failedCount: number;
  readonly lastFailedWal: string | null;
  readonly lastFailedAt: Date | null;
  readonly lastFailedSeconds: number | null;
  /** The last attempt failed: a failure newer than the last success, or failures and no success yet. */
  readonly failing: boolean;
  /** Segments marked .ready in pg_wal/archive_status, waiting for the archiver; null when unknown (see waitingUnknownReason). */
  readonly waitingSegments: number | null;
  readonly waitingUnknownReason: string | null;
  readonly statsReset: Date | null;
}

export interface WalReceiver {
  readonly pid: number;
  /** streaming, starting, waiting, restarting, stopping; null when this role may not see details. */
  readonly status: string | null;
  readonly senderHost: string | null;
  readonly senderPort: number | null;
  readonly slotName: string | null;
  readonly receiveStartLsn: string | null;
  /** Written to disk, not yet flushed (PostgreSQL 13+). */
  readonly writtenLsn: string | null;
  /** Flushed to disk (received_lsn before 13). */
  readonly flushedLsn: string | null;
  readonly receivedTimeline: number | null;
  readonly lastMessageSentAt: Date | null;
  readonly lastMessageReceivedAt: Date | null;
  readonly lastMessageAgeSeconds: number | null;
  /** The primary's WAL end as it last reported it. */
  readonly latestEndLsn: string | null;
  readonly latestEndAt: Date | null;
}

export interface Replay {
  /** The last WAL position received and flushed; null when not streaming (e.g. restoring from an archive). */
  readonly receiveLsn: string | null;
  readonly replayLsn: string | null;
  /** Bytes received but not yet replayed. */
  readonly gapBytes: number | null;
  /** Commit time of the last replayed transaction. */
  readonly lastReplayAt: Date | null;
  /** Seconds since that commit; 0 when everything received is replayed (it grows forever on an idle primary). */
  readonly delaySeconds: number | null;
  /** pg_is_wal_replay_paused(): true once a pause is requested. */
  readonly paused: boolean;
  /** not paused, pause requested, paused (PostgreSQL 14+). */
  readonly pauseState: string | null;
}

export interface PrimaryReplication {
  readonly role: 'primary';
  readonly currentLsn: string;
  readonly standbys: readonly Standby[];
  readonly slots: readonly ReplicationSlot[];
  readonly archiver: Archiver;
}

export interface StandbyReplication {
  readonly role: 'standby';
  /** Null when no WAL receiver runs (not streaming). */
  readonly receiver: WalReceiver | null;
  readonly replay: Replay;
  readonly slots: readonly ReplicationSlot[];
  /**
   * Standbys streaming from this one (cascading replication): its WAL senders, with distances from
   * the last position it received or replayed. The probe always sets it; absent only in snapshots
   * made by hand.
   */
  readonly standbys?: readonly Standby[];
}

export type ReplicationSnapshot = PrimaryReplication | StandbyReplication;

// The role comes from the SQL rather than the cached ServerInfo, so a promotion shows on the next run.
// Functions that raise on the wrong role sit behind a role test.
const positionSql = (version: number): string => `
select pg_is_in_recovery() as in_recovery,
       case when not pg_is_in_recovery() then pg_current_wal_lsn()::text end as current_lsn,
       pg_last_wal_receive_lsn()::text as receive_lsn,
       pg_last_wal_replay_lsn()::text as replay_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) as replay_gap_bytes,
       pg_last_xact_replay_timestamp() as last_replay_at,
       extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as replay_delay_seconds,
       case when pg_is_in_recovery() then pg_is_wal_replay_paused() end as paused,
       ${version >= 140000 ? 'case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() end' : 'null::text'} as pause_state`;

const standbysSql = (version: number): string => `
select r.pid, coalesce(r.application_name, '') as application,
       case when r.client_addr is not null then host(r.client_addr) when r.client_port = -1 then 'local' end as client,
       r.state, r.sync_state, r.sync_priority,
       r.sent_lsn::text as sent_lsn, r.write_lsn::text as write_lsn, r.flush_lsn::text as flush_lsn, r.replay_lsn::text as replay_lsn,
       pg_wal_lsn_diff(c.lsn, r.sent_lsn) as sent_bytes,
       pg_wal_lsn_diff(c.lsn, r.write_lsn) as write_bytes,
       pg_wal_lsn_diff(c.lsn, r.flush_lsn) as flush_bytes,
       pg_wal_lsn_diff(c.lsn, r.replay_lsn) as replay_bytes,
       extract(epoch from r.write_lag)::float8 as write_lag_seconds,
       extract(epoch from r.flush_lag)::float8 as flush_lag_seconds,
       extract(epoch from r.replay_lag)::float8 as replay_lag_seconds,
       ${version >= 120000 ? 'extract(epoch from now() - r.reply_time)::float8' : 'null::float8'} as reply_age_seconds
  -- pg_stat_replication joins every backend's status; starting from the WAL senders reads only theirs.
  from (select w.pid, a.application_name, a.client_addr, a.client_port, w.state, w.sync_state, w.sync_priority,
               w.sent_lsn, w.write_lsn, w.flush_lsn, w.replay_lsn, w.write_lag, w.flush_lag, w.replay_lag
               ${version >= 120000 ? ', w.reply_time' : ''}
          from pg_stat_get_wal_senders() w
         cross join lateral pg_stat_get_activity(w.pid) a) r
 -- A cascading standby sends what it received or replayed; a primary what it wrote.
 cross join (select case when pg_is_in_recovery() then greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                         else pg_current_wal_lsn() end as lsn) c
 order by r.application_name, r.pid`;

// A standby keeps WAL up to what it received; a primary up to what it wrote.
const slotsSql = (version: number): string => `
select s.slot_name, s.slot_type, s.plugin, s.database, s.temporary, s.active, s.active_pid,
       s.restart_lsn::text as restart_lsn, s.confirmed_flush_lsn::text as confirmed_flush_lsn,
       ${version >= 130000 ? 's.wal_status, s.safe_wal_size as safe_wal_size_bytes' : 'null::text as wal_status, null::int8 as safe_wal_size_bytes'},
       pg_wal_lsn_diff(c.lsn, s.restart_lsn) as retained_bytes,
       age(s.xmin)::int8 as xmin_age, age(s.catalog_xmin)::int8 as catalog_xmin_age,
       ${version >= 170000 ? 's.inactive_since' : 'null::timestamptz as inactive_since'}
  from pg_replication_slots s
 cross join (select case when pg_is_in_recovery() then greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())
                         else pg_current_wal_lsn() end as lsn) c
 order by s.slot_name`;

// pg_ls_archive_statusdir() exists from 12 and is granted to pg_monitor. A role without it would fail
// the whole query even behind a CASE (EXECUTE is checked when the plan starts), so the count is a
// follow-up run only when the privilege test passes.
const archiverSql = (version: number): string => `
select a.archived_count, a.last_archived_wal, a.last_archived_time,
       extract(epoch from now() - a.last_archived_time)::float8 as last_archived_seconds,
       a.failed_count, a.last_failed_wal, a.last_failed_time,
       extract(epoch from now() - a.last_failed_time)::float8 as last_failed_seconds,
       a.stats_reset, current_setting('archive_mode') as archive_mode,
       ${version >= 120000 ? "has_function_privilege('pg_catalog.pg_ls_archive_statusdir()', 'execute')" : 'null::boolean'} as waiting_permitted
  from pg_stat_archiver a`;

const archiveStatusSql = `select count(*) as waiting_segments from pg_catalog.pg_ls_archive_statusdir() where name like '%.ready'`;

// sender_host/sender_port appeared in 11; in 13 received_lsn became flushed_lsn and written_lsn was added.
const receiverSql = (version: number): string => `
select w.pid, w.status, w.slot_name,
       ${version >= 110000 ? 'w.sender_host, w.sender_port' : 'null::text as sender_host, null::int as sender_port'},
       w.receive_start_lsn::text as receive_start_lsn,
       ${version >= 130000 ? 'w.written_lsn::text as written_lsn, w.flushed_lsn::text as flushed_lsn' : 'null::text as written_lsn, w.received_lsn::text as flushed_lsn'},
       w.received_tli, w.last_msg_send_time, w.last_msg_receipt_time,
       extract(epoch from now() - w.last_msg_receipt_time)::float8 as last_msg_age_seconds,
       w.latest_end_lsn::text as latest_end_lsn, w.latest_end_time
  from pg_stat_wal_receiver w`;

/** A lag in seconds, or 0 when the byte distance says nothing is outstanding (the server's figure is stale then). */
export function lagSeconds(seconds: number | null, bytesBehind: number | null): number | null {
  if (bytesBehind !== null && bytesBehind <= 0) return 0;
  return seconds;
}

function parseStandby(row: Row): Standby {
  const replayBytes = numberOrNull(row, 'replay_bytes');
  const writeBytes = numberOrNull(row, 'write_bytes');
  const flushBytes = numberOrNull(row, 'flush_bytes');
  const replayLagSeconds = lagSeconds(numberOrNull(row, 'replay_lag_seconds'), replayBytes);
  return {
    pid: number(row, 'pid'),
    application: string(row, 'application'),
    client: stringOrNull(row, 'client'),
    state: stringOrNull(row, 'state'),
    syncState: stringOrNull(row, 'sync_state'),
    syncPriority: numberOrNull(row, 'sync_priority'),
    sentLsn: stringOrNull(row, 'sent_lsn'),
    writeLsn: stringOrNull(row, 'write_lsn'),
    flushLsn: stringOrNull(row, 'flush_lsn'),
    replayLsn: stringOrNull(row, 'replay_lsn'),
    sentBytes: numberOrNull(row, 'sent_bytes'),
    writeBytes,
    flushBytes,
    replayBytes,
    writeLagSeconds: lagSeconds(numberOrNull(row, 'write_lag_seconds'), writeBytes),
    flushLagSeconds: lagSeconds(numberOrNull(row, 'flush_lag_seconds'), flushBytes),
    replayLagSeconds,
    replyAgeSeconds: numberOrNull(row, 'reply_age_seconds'),
    lag: { bytes: replayBytes, seconds: replayLagSeconds },
  };
}

function parseSlot(row: Row, previous: readonly ReplicationSlot[] | undefined, now: Date): ReplicationSlot {
  const name = string(row, 'slot_name');
  const active = boolean(row, 'active');
  let inactiveSince = dateOrNull(row, 'inactive_since');
  if (!active && inactiveSince === null) {
    // Before 17 the server does not say; carry the first time we saw it inactive.
    inactiveSince = previous?.find((slot) => slot.name === name && !slot.active)?.inactiveSince ?? now;
  }
  return {
    name,
    type: string(row, 'slot_type'),
    plugin: stringOrNull(row, 'plugin'),
    database: stringOrNull(row, 'database'),
    temporary: boolean(row, 'temporary'),
    active,
    activePid: numberOrNull(row, 'active_pid'),
    restartLsn: stringOrNull(row, 'restart_lsn'),
    confirmedFlushLsn: stringOrNull(row, 'confirmed_flush_lsn'),
    walStatus: stringOrNull(row, 'wal_status'),
    safeWalSizeBytes: numberOrNull(row, 'safe_wal_size_bytes'),
    retainedBytes: numberOrNull(row, 'retained_bytes'),
    xminAge: numberOrNull(row, 'xmin_age'),
    catalogXminAge: numberOrNull(row, 'catalog_xmin_age'),
    inactiveSince: active ? null : inactiveSince,
  };
}

function parseArchiver(row: Row | undefined, status: Row | undefined): Archiver {
  if (row === undefined) throw new Error('pg_stat_archiver returned no row');
  const lastArchivedAt = dateOrNull(row, 'last_archived_time');
  const lastFailedAt = dateOrNull(row, 'last_failed_time');
  const waitingSegments = status === undefined ? null : numberOrNull(status, 'waiting_segments');
  const permitted = booleanOrNull(row, 'waiting_permitted');
  let waitingUnknownReason: string | null = null;
  if (waitingSegments === null) {
    if (permitted === null) waitingUnknownReason = 'counting .ready files needs pg_ls_archive_statusdir() (PostgreSQL 12+)';
    else if (!permitted) waitingUnknownReason = 'this role may not call pg_ls_archive_statusdir(): grant it pg_monitor';
    else waitingUnknownReason = 'the archive_status directory was not read';
  }
  return {
    mode: string(row, 'archive_mode'),
    archivedCount: number(row, 'archived_count'),
    lastArchivedWal: stringOrNull(row, 'last_archived_wal'),
    lastArchivedAt,
    lastArchivedSeconds: numberOrNull(row, 'last_archived_seconds'),
    failedCount: number(row, 'failed_count'),
    lastFailedWal: stringOrNull(row, 'last_failed_wal'),
    lastFailedAt,
    lastFailedSeconds: numberOrNull(row, 'last_failed_seconds'),
    failing: lastFailedAt !== null && (lastArchivedAt === null || lastFailedAt.getTime() > lastArchivedAt.getTime()),
    waitingSegments,
    waitingUnknownReason,
    statsReset: dateOrNull(row, 'stats_reset'),
  };
}

function parseReceiver(row: Row | undefined): WalReceiver | null {
  if (row === undefined) return null;
  return {
    pid: number(row, 'pid'),
    status: stringOrNull(row, 'status'),
    senderHost: stringOrNull(row, 'sender_host'),
    senderPort: numberOrNull(row, 'sender_port'),
    slotName: stringOrNull(row, 'slot_name'),
    receiveStartLsn: stringOrNull(row, 'receive_start_lsn'),
    writtenLsn: stringOrNull(row, 'written_lsn'),
    flushedLsn: stringOrNull(row, 'flushed_lsn'),
    receivedTimeline: numberOrNull(row, 'received_tli'),
    lastMessageSentAt: dateOrNull(row, 'last_msg_send_time'),
    lastMessageReceivedAt: dateOrNull(row, 'last_msg_receipt_time'),
    lastMessageAgeSeconds: numberOrNull(row, 'last_msg_age_seconds'),
    latestEndLsn: stringOrNull(row, 'latest_end_lsn'),
    latestEndAt: dateOrNull(row, 'latest_end_time'),
  };
}

function parseReplay(row: Row): Replay {
  const gapBytes = numberOrNull(row, 'replay_gap_bytes');
  return {
    receiveLsn: stringOrNull(row, 'receive_lsn'),
    replayLsn: stringOrNull(row, 'replay_lsn'),
    gapBytes,
    lastReplayAt: dateOrNull(row, 'last_replay_at'),
    delaySeconds: lagSeconds(numberOrNull(row, 'replay_delay_seconds'), gapBytes),
    paused: boolean(row, 'paused'),
    pauseState: stringOrNull(row, 'pause_state'),
  };
}

/** Replication seen from this node: standbys, slots and archiver on a primary; receiver, replay and slots on a standby. */
export const replicationProbe: Probe<ReplicationSnapshot> = {
  id: 'replication',
  title: 'Replication',
  target: 'server',
  cadenceMs: 2000,
  minServerVersion: 100000,
  queries: (server) => {
    const version = server?.versionNum ?? 150000;
    return {
      position: { text: positionSql(version) },
      standbys: { text: standbysSql(version) },
      slots: { text: slotsSql(version) },
      archiver: { text: archiverSql(version) },
      receiver: { text: receiverSql(version) },
    };
  },
  followUp(rows) {
    const primary = rowsOf(rows, 'position')[0]?.['in_recovery'] === false;
    const permitted = rowsOf(rows, 'archiver')[0]?.['waiting_permitted'] === true;
    return primary && permitted ? { archiveStatus: { text: archiveStatusSql } } : {};
  },
  parse(rows, context) {
    const position = rowsOf(rows, 'position')[0];
    if (position === undefined) throw new Error('replication probe returned no position row');
    const previousSlots = context.previous?.slots;
    const slots = rowsOf(rows, 'slots').map((row) => parseSlot(row, previousSlots, context.now));
    if (boolean(position, 'in_recovery')) {
      return { role: 'standby', receiver: parseReceiver(rowsOf(rows, 'receiver')[0]), replay: parseReplay(position), slots, standbys: rowsOf(rows, 'standbys').map(parseStandby) };
    }
    return {
      role: 'primary',
      currentLsn: string(position, 'current_lsn'),
      standbys: rowsOf(rows, 'standbys').map(parseStandby),
      slots,
      archiver: parseArchiver(rowsOf(rows, 'archiver')[0], rowsOf(rows, 'archiveStatus')[0]),
    };
  },
};
