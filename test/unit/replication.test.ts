import { describe, expect, it } from 'vitest';
import type { Row, ServerInfo } from '../../src/db/types.js';
import { lagSeconds, replicationProbe, type PrimaryReplication, type ReplicationSnapshot, type StandbyReplication } from '../../src/probes/replication.js';
import type { RowSets } from '../../src/probes/types.js';

const now = new Date('2025-01-01T12:00:00Z');

function server(versionNum: number): ServerInfo {
  return {
    versionNum, version: String(versionNum), inRecovery: false, currentUser: 'watcher', database: 'postgres',
    superuser: false, monitor: true, extensions: {}, preloadLibraries: null,
  };
}

const primaryPosition: Row = {
  in_recovery: false, current_lsn: '0/3000148', receive_lsn: null, replay_lsn: null, replay_gap_bytes: null,
  last_replay_at: null, replay_delay_seconds: null, paused: null, pause_state: null,
};

function standbyRow(overrides: Record<string, unknown> = {}): Row {
  return {
    pid: 4242, application: 'walreceiver', client: '127.0.0.1', state: 'streaming', sync_state: 'async', sync_priority: 0,
    sent_lsn: '0/3000148', write_lsn: '0/3000148', flush_lsn: '0/3000148', replay_lsn: '0/3000148',
    sent_bytes: '0', write_bytes: '0', flush_bytes: '0', replay_bytes: '0',
    write_lag_seconds: null, flush_lag_seconds: null, replay_lag_seconds: null, reply_age_seconds: 0.4,
    ...overrides,
  };
}

function slotRow(overrides: Record<string, unknown> = {}): Row {
  return {
    slot_name: 'standby1', slot_type: 'physical', plugin: null, database: null, temporary: false, active: true, active_pid: 4242,
    restart_lsn: '0/3000148', confirmed_flush_lsn: null, wal_status: 'reserved', safe_wal_size_bytes: null,
    retained_bytes: '0', xmin_age: null, catalog_xmin_age: null, inactive_since: null,
    ...overrides,
  };
}

function archiverRow(overrides: Record<string, unknown> = {}): Row {
  return {
    archived_count: '12', last_archived_wal: '00000001000000000000000B', last_archived_time: new Date('2025-01-01T11:59:00Z'),
    last_archived_seconds: 60, failed_count: '0', last_failed_wal: null, last_failed_time: null, last_failed_seconds: null,
    stats_reset: new Date('2025-01-01T00:00:00Z'), archive_mode: 'on', waiting_permitted: true,
    ...overrides,
  };
}

function parse(rows: RowSets, previous?: ReplicationSnapshot, at: Date = now): ReplicationSnapshot {
  return replicationProbe.parse(rows, { server: server(150000), now: at, previous });
}

function primary(rows: Partial<Record<'standbys' | 'slots' | 'archiver' | 'archiveStatus', readonly Row[]>>, previous?: ReplicationSnapshot, at?: Date): PrimaryReplication {
  const snapshot = parse({
    position: [primaryPosition], standbys: rows.standbys ?? [], slots: rows.slots ?? [], archiver: rows.archiver ?? [archiverRow()],
    archiveStatus: rows.archiveStatus ?? [{ waiting_segments: '0' }], receiver: [],
  }, previous, at);
  if (snapshot.role !== 'primary') throw new Error('expected a primary snapshot');
  return snapshot;
}

describe('replication probe: primary', () => {
  it('reports a caught-up standby with NULL lag columns as 0 s and 0 bytes (idle primary)', () => {
    const snapshot = primary({ standbys: [standbyRow()] });
    expect(snapshot.currentLsn).toBe('0/3000148');
    const standby = snapshot.standbys[0];
    expect(standby).toMatchObject({ pid: 4242, application: 'walreceiver', client: '127.0.0.1', state: 'streaming', syncState: 'async', syncPriority: 0 });
    expect(standby?.replayBytes).toBe(0);
    expect(standby?.writeLagSeconds).toBe(0);
    expect(standby?.flushLagSeconds).toBe(0);
    expect(standby?.replayLagSeconds).toBe(0);
    expect(standby?.lag).toEqual({ bytes: 0, seconds: 0 });
  });

  it('replaces a stale lag figure with 0 once everything is replayed', () => {
    const snapshot = primary({ standbys: [standbyRow({ write_lag_seconds: 0.002, flush_lag_seconds: 0.004, replay_lag_seconds: 37.5 })] });
    expect(snapshot.standbys[0]?.lag).toEqual({ bytes: 0, seconds: 0 });
  });

  it('keeps lag in bytes (int8/numeric strings) and seconds while the standby is behind', () => {
    const snapshot = primary({
      standbys: [standbyRow({
        write_lsn: '0/3000148', flush_lsn: '0/2F00000', replay_lsn: '0/2000000',
        write_bytes: '0', flush_bytes: '1049928', replay_bytes: '16777544',
        write_lag_seconds: 0.01, flush_lag_seconds: 0.5, replay_lag_seconds: 12.25,
      })],
    });
    const standby = snapshot.standbys[0];
    expect(standby?.writeLagSeconds).toBe(0);
    expect(standby?.flushBytes).toBe(1049928);
    expect(standby?.flushLagSeconds).toBe(0.5);
    expect(standby?.replayBytes).toBe(16777544);
    expect(standby?.lag).toEqual({ bytes: 16777544, seconds: 12.25 });
  });

  it('keeps NULL lag as null while the standby is behind (unknown, never 0)', () => {
    const snapshot = primary({ standbys: [standbyRow({ replay_bytes: '8192', replay_lsn: '0/3000000' })] });
    expect(snapshot.standbys[0]?.lag).toEqual({ bytes: 8192, seconds: null });
  });

  it('keeps every detail null when the role may not see walsender details', () => {
    const hidden = standbyRow({
      client: null, state: null, sync_state: null, sync_priority: null, sent_lsn: null, write_lsn: null, flush_lsn: null, replay_lsn: null,
      sent_bytes: null, write_bytes: null, flush_bytes: null, replay_bytes: null, reply_age_seconds: null,
    });
    const standby = primary({ standbys: [hidden] }).standbys[0];
    expect(standby).toMatchObject({ state: null, sentBytes: null, replayBytes: null, replayLagSeconds: null, lag: { bytes: null, seconds: null } });
  });

  it('parses slots with int8 strings, NULL positions and ages', () => {
    const snapshot = primary({
      slots: [
        slotRow({ safe_wal_size_bytes: '1073741824', retained_bytes: '33554432', xmin_age: '1500' }),
        slotRow({ slot_name: 'fresh', active: false, active_pid: null, restart_lsn: null, retained_bytes: null, wal_status: null }),
        slotRow({ slot_name: 'cdc', slot_type: 'logical', plugin: 'pgoutput', database: 'app', catalog_xmin_age: '77', confirmed_flush_lsn: '0/3000100' }),
      ],
    });
    expect(snapshot.slots[0]).toMatchObject({ name: 'standby1', active: true, activePid: 4242, safeWalSizeBytes: 1073741824, retainedBytes: 33554432, xminAge: 1500, walStatus: 'reserved', inactiveSince: null });
    expect(snapshot.slots[1]).toMatchObject({ name: 'fresh', active: false, activePid: null, restartLsn: null, retainedBytes: null, walStatus: null });
    expect(snapshot.slots[2]).toMatchObject({ type: 'logical', plugin: 'pgoutput', database: 'app', catalogXminAge: 77, confirmedFlushLsn: '0/3000100' });
  });

  it('carries the first time a slot was seen inactive (before 17), and takes the server figure on 17+', () => {
    const first = primary({ slots: [slotRow({ active: false, active_pid: null })] });
    expect(first.slots[0]?.inactiveSince).toEqual(now);
    const later = new Date(now.getTime() + 60_000);
    const second = primary({ slots: [slotRow({ active: false, active_pid: null })] }, first, later);
    expect(second.slots[0]?.inactiveSince).toEqual(now);
    const reactivated = primary({ slots: [slotRow()] }, second, later);
    expect(reactivated.slots[0]?.inactiveSince).toBeNull();
    const fromServer = new Date('2025-01-01T10:00:00Z');
    const v17 = primary({ slots: [slotRow({ active: false, active_pid: null, inactive_since: fromServer })] }, second, later);
    expect(v17.slots[0]?.inactiveSince).toEqual(fromServer);
  });

  it('says the archiver is healthy when the last success is newer than the last failure', () => {
    const archiver = primary({ archiver: [archiverRow({ failed_count: '3', last_failed_time: new Date('2025-01-01T11:00:00Z'), last_failed_wal: '000000010000000000000005' })] }).archiver;
    expect(archiver).toMatchObject({ mode: 'on', archivedCount: 12, failedCount: 3, failing: false, waitingSegments: 0, waitingUnknownReason: null });
  });

  it('says the archiver is failing when the last failure is newer, or nothing was ever archived', () => {
    const newer = primary({ archiver: [archiverRow({ failed_count: '4', last_failed_time: new Date('2025-01-01T11:59:30Z') })], archiveStatus: [{ waiting_segments: '7' }] }).archiver;
    expect(newer).toMatchObject({ failing: true, failedCount: 4, waitingSegments: 7 });
    const never = primary({
      archiver: [archiverRow({ archived_count: '0', last_archived_wal: null, last_archived_time: null, last_archived_seconds: null, failed_count: '1', last_failed_time: new Date('2025-01-01T11:59:30Z') })],
    }).archiver;
    expect(never).toMatchObject({ failing: true, archivedCount: 0, lastArchivedAt: null });
    const idle = primary({ archiver: [archiverRow({ archived_count: '0', last_archived_time: null, last_archived_wal: null, last_archived_seconds: null, archive_mode: 'off' })] }).archiver;
    expect(idle.failing).toBe(false);
  });

  it('gives the reason when the .ready count is unknown', () => {
    const denied = primary({ archiver: [archiverRow({ waiting_permitted: false })], archiveStatus: [] }).archiver;
    expect(denied.waitingSegments).toBeNull();
    expect(denied.waitingUnknownReason).toMatch(/pg_monitor/);
    const old = primary({ archiver: [archiverRow({ waiting_permitted: null })], archiveStatus: [] }).archiver;
    expect(old.waitingSegments).toBeNull();
    expect(old.waitingUnknownReason).toMatch(/PostgreSQL 12/);
  });

  it('counts .ready files only on a primary and only when the role may call pg_ls_archive_statusdir()', () => {
    const followUp = (inRecovery: boolean, permitted: boolean | null) =>
      replicationProbe.followUp?.({ position: [{ ...primaryPosition, in_recovery: inRecovery }], archiver: [archiverRow({ waiting_permitted: permitted })] }, server(150000));
    expect(followUp(false, true)?.['archiveStatus']?.text).toContain("pg_ls_archive_statusdir() where name like '%.ready'");
    expect(followUp(false, false)).toEqual({});
    expect(followUp(false, null)).toEqual({});
    expect(followUp(true, true)).toEqual({});
  });
});

describe('replication probe: standby', () => {
  const receiver: Row = {
    pid: 99, status: 'streaming', slot_name: 'standby1', sender_host: '10.0.0.1', sender_port: 5432,
    receive_start_lsn: '0/3000000', written_lsn: '0/5000000', flushed_lsn: '0/5000000', received_tli: 1,
    last_msg_send_time: new Date('2025-01-01T11:59:59Z'), last_msg_receipt_time: new Date('2025-01-01T11:59:59Z'), last_msg_age_seconds: 1.2,
    latest_end_lsn: '0/5000000', latest_end_time: new Date('2025-01-01T11:59:59Z'),
  };
  const position = (overrides: Record<string, unknown>): Row => ({
    in_recovery: true, current_lsn: null, receive_lsn: '0/5000000', replay_lsn: '0/5000000', replay_gap_bytes: '0',
    last_replay_at: new Date('2025-01-01T10:00:00Z'), replay_delay_seconds: 7200, paused: false, pause_state: 'not paused',
    ...overrides,
  });

  function standby(rows: RowSets): StandbyReplication {
    const snapshot = parse(rows);
    if (snapshot.role !== 'standby') throw new Error('expected a standby snapshot');
    return snapshot;
  }

  it('reports replay delay 0 when everything received is replayed (idle primary)', () => {
    const snapshot = standby({ position: [position({})], receiver: [receiver], slots: [], standbys: [], archiver: [archiverRow()] });
    expect(snapshot.replay).toMatchObject({ gapBytes: 0, delaySeconds: 0, paused: false, pauseState: 'not paused' });
    expect(snapshot.receiver).toMatchObject({ status: 'streaming', senderHost: '10.0.0.1', senderPort: 5432, receivedTimeline: 1, flushedLsn: '0/5000000', lastMessageAgeSeconds: 1.2 });
    expect('archiver' in snapshot).toBe(false);
  });

  it('reports the replay gap and delay while replay is paused', () => {
    const snapshot = standby({
      position: [position({ replay_lsn: '0/4000000', replay_gap_bytes: '16777216', replay_delay_seconds: 42.5, paused: true, pause_state: 'paused' })],
      receiver: [receiver], slots: [slotRow({ slot_name: 'cascade', active: false, active_pid: null, retained_bytes: '16777216' })],
    });
    expect(snapshot.replay).toMatchObject({ gapBytes: 16777216, delaySeconds: 42.5, paused: true, pauseState: 'paused' });
    expect(snapshot.slots[0]).toMatchObject({ name: 'cascade', retainedBytes: 16777216 });
  });

  it('has no receiver and keeps the raw delay when not streaming', () => {
    const snapshot = standby({ position: [position({ receive_lsn: null, replay_gap_bytes: null, replay_delay_seconds: 30 })], receiver: [] });
    expect(snapshot.receiver).toBeNull();
    expect(snapshot.replay).toMatchObject({ receiveLsn: null, gapBytes: null, delaySeconds: 30 });
  });
});

describe('replication probe: SQL and helpers', () => {
  it('applies the idle rule only when nothing is outstanding', () => {
    expect(lagSeconds(12, 0)).toBe(0);
    expect(lagSeconds(null, 0)).toBe(0);
    expect(lagSeconds(12, 100)).toBe(12);
    expect(lagSeconds(null, 100)).toBeNull();
    expect(lagSeconds(5, null)).toBe(5);
  });

  it('selects columns by server version', () => {
    const v10 = Object.values(replicationProbe.queries(server(100000))).map((q) => q.text).join('\n');
    expect(v10).toContain('w.received_lsn::text as flushed_lsn');
    expect(v10).toContain('null::text as sender_host');
    expect(v10).toContain('null::text as wal_status');
    expect(v10).not.toContain('pg_ls_archive_statusdir');
    expect(v10).not.toContain('pg_get_wal_replay_pause_state');
    expect(v10).not.toMatch(/pg_current_xlog|pg_xlog/);
    const v15 = Object.values(replicationProbe.queries(server(150000))).map((q) => q.text).join('\n');
    expect(v15).toContain('w.written_lsn');
    expect(v15).toContain('w.sender_host, w.sender_port');
    expect(v15).toContain("has_function_privilege('pg_catalog.pg_ls_archive_statusdir()', 'execute')");
    expect(v15).toContain('pg_get_wal_replay_pause_state()');
    expect(v15).toContain('null::timestamptz as inactive_since');
    const v17 = Object.values(replicationProbe.queries(server(170000))).map((q) => q.text).join('\n');
    expect(v17).toContain('s.inactive_since');
  });

  it('fails loudly without a position row', () => {
    expect(() => parse({ position: [] })).toThrow(/no position row/);
  });
});
