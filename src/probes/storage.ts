/**
 * Where the server writes and how full it is: the data directory, pg_wal and the tablespaces with
 * the free disk of their filesystems (statfs, only when the data directory is proven to be this
 * server's on this host), the size of pg_wal against max_wal_size, and the checkpoint counters.
 */
import type { Row } from '../db/types.js';
import { measureFilesystems, verifyDataDirectory, type Location } from './local-disk.js';
import type { Probe, RowSets } from './types.js';
import { boolean, booleanOrNull, dateOrNull, number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

export interface Tablespace {
  readonly oid: number;
  readonly name: string;
  /** pg_tablespace_location(); null for pg_default and pg_global, which live in the data directory. */
  readonly location: string | null;
}

/** One filesystem the server writes to, with the locations on it. */
export interface Filesystem {
  /** The device number (st_dev) shared by the locations on this filesystem. */
  readonly device: string;
  /** "data directory", "pg_wal", "tablespace <name>". */
  readonly locations: readonly string[];
  readonly paths: readonly string[];
  readonly totalBytes: number;
  readonly usedBytes: number;
  /** Free for the server's OS user (blocks reserved for root excluded), as df's Avail. */
  readonly availableBytes: number;
  /** used / (used + available), as df's Use%. */
  readonly usedFraction: number;
}

export interface DiskUsage {
  /** The data directory was proven to be this server's, on this host (so statfs measures the right disk). */
  readonly local: boolean;
  /** Why free disk is unknown, or partly unknown; null when every location was measured. */
  readonly unknownReason: string | null;
  readonly filesystems: readonly Filesystem[];
}

export interface WalUsage {
  /** Sum of the files in pg_wal (pg_ls_waldir()); null when this role may not list it. */
  readonly sizeBytes: number | null;
  /** WAL segment files in pg_wal; null likewise. */
  readonly segments: number | null;
  readonly maxWalSizeBytes: number;
  /** Why sizeBytes is null, with the GRANT that fixes it; null when measured. */
  readonly unknownReason: string | null;
}

/** Cumulative checkpoint counters (pg_stat_bgwriter; pg_stat_checkpointer and pg_stat_io from 17). */
export interface CheckpointCounters {
  /** Checkpoints started by checkpoint_timeout (restartpoints on a standby before 17). */
  readonly timed: number;
  /** Checkpoints requested: max_wal_size reached, CHECKPOINT, a base backup, a shutdown… */
  readonly requested: number;
  readonly writeTimeMs: number;
  readonly syncTimeMs: number;
  readonly buffersWritten: number;
  /** Times a backend had to fsync itself because the checkpointer's queue was full; null when not reported. */
  readonly backendFsyncs: number | null;
  readonly statsReset: Date | null;
}

export interface StorageSnapshot {
  /** data_directory; null when this role may not read it (needs pg_read_all_settings, part of pg_monitor). */
  readonly dataDirectory: string | null;
  readonly port: number;
  readonly startedAt: Date;
  readonly tablespaces: readonly Tablespace[];
  readonly disk: DiskUsage;
  readonly wal: WalUsage;
  readonly checkpoints: CheckpointCounters;
}

// pg_settings hides data_directory from roles without pg_read_all_settings (null), where
// current_setting() would fail the whole query.
const serverSql = `
select (select setting from pg_settings where name = 'data_directory') as data_directory,
       current_user as role,
       current_setting('port')::int as port,
       pg_postmaster_start_time() as started_at,
       extract(epoch from pg_postmaster_start_time())::float8 as started_epoch,
       (select system_identifier::text from pg_control_system()) as system_identifier,
       pg_size_bytes(current_setting('max_wal_size')) as max_wal_size_bytes,
       has_function_privilege('pg_catalog.pg_ls_waldir()', 'execute') as wal_permitted`;

const tablespacesSql = `select oid, spcname as name, nullif(pg_tablespace_location(oid), '') as location from pg_tablespace order by spcname`;

// 17 moved the checkpoint counters to pg_stat_checkpointer and backend fsyncs to pg_stat_io.
const checkpointsSql = (version: number): string => version >= 170000
  ? `select c.num_timed as timed, c.num_requested as requested, c.write_time as write_time_ms, c.sync_time as sync_time_ms,
            c.buffers_written, (select coalesce(sum(fsyncs), 0) from pg_stat_io where backend_type <> 'checkpointer') as backend_fsyncs,
            c.stats_reset
       from pg_stat_checkpointer c`
  : `select checkpoints_timed as timed, checkpoints_req as requested, checkpoint_write_time as write_time_ms, checkpoint_sync_time as sync_time_ms,
            buffers_checkpoint as buffers_written, buffers_backend_fsync as backend_fsyncs, stats_reset
       from pg_stat_bgwriter`;

// pg_ls_waldir() is granted to pg_monitor only; EXECUTE is checked when the plan starts, so it is a
// follow-up run only when the privilege test passes.
const walSql = `select count(*) filter (where name ~ '^[0-9A-F]{24}$') as segments, coalesce(sum(size), 0) as size_bytes from pg_catalog.pg_ls_waldir()`;

/** The GRANT a role needs for what the storage probe reads behind a privilege. */
function grantFor(role: string): string {
  return `GRANT pg_monitor TO ${role};`;
}

/** The places the server writes to: the data directory, pg_wal and each tablespace outside it. */
export function storageLocations(dataDirectory: string, tablespaces: readonly Tablespace[]): Location[] {
  return [
    { label: 'data directory', path: dataDirectory },
    { label: 'pg_wal', path: `${dataDirectory}/pg_wal` },
    ...tablespaces.flatMap((t) => (t.location === null ? [] : [{ label: `tablespace ${t.name}`, path: t.location }])),
  ];
}

function parseTablespace(row: Row): Tablespace {
  return { oid: number(row, 'oid'), name: string(row, 'name'), location: stringOrNull(row, 'location') };
}

/** The local measurement as rows: one "disk" row (local, reason) and one row per filesystem. */
async function measureLocally(rows: RowSets): Promise<RowSets> {
  const server = rowsOf(rows, 'server')[0];
  if (server === undefined) return {};
  const dataDirectory = stringOrNull(server, 'data_directory');
  if (dataDirectory === null) {
    const role = string(server, 'role');
    return { disk: [{ local: false, reason: `role ${role} may not read data_directory, so the disk it is on is unknown: ${grantFor(role)} (or pg_read_all_settings)` }] };
  }
  const verification = await verifyDataDirectory({
    dataDirectory,
    port: number(server, 'port'),
    startedAtEpoch: number(server, 'started_epoch'),
    systemIdentifier: string(server, 'system_identifier'),
  });
  if (!verification.local) return { disk: [{ local: false, reason: verification.reason }] };
  const { filesystems, failures } = await measureFilesystems(storageLocations(dataDirectory, rowsOf(rows, 'tablespaces').map(parseTablespace)));
  return {
    disk: [{ local: true, reason: failures.length === 0 ? null : `cannot measure ${failures.join('; ')}` }],
    filesystems: filesystems.map((fs) => ({ ...fs })),
  };
}

function parseFilesystem(row: Row): Filesystem {
  const list = (key: string): string[] => {
    const value = row[key];
    return Array.isArray(value) ? value.map(String) : [];
  };
  return {
    device: string(row, 'device'),
    locations: list('locations'),
    paths: list('paths'),
    totalBytes: number(row, 'totalBytes'),
    usedBytes: number(row, 'usedBytes'),
    availableBytes: number(row, 'availableBytes'),
    usedFraction: number(row, 'usedFraction'),
  };
}

function parseDisk(rows: RowSets): DiskUsage {
  const disk = rowsOf(rows, 'disk')[0];
  if (disk === undefined) return { local: false, unknownReason: 'free disk was not measured (no local measurement ran)', filesystems: [] };
  return { local: boolean(disk, 'local'), unknownReason: stringOrNull(disk, 'reason'), filesystems: rowsOf(rows, 'filesystems').map(parseFilesystem) };
}

function parseWal(server: Row, wal: Row | undefined): WalUsage {
  const permitted = booleanOrNull(server, 'wal_permitted') === true;
  const role = string(server, 'role');
  return {
    sizeBytes: wal === undefined ? null : number(wal, 'size_bytes'),
    segments: wal === undefined ? null : number(wal, 'segments'),
    maxWalSizeBytes: number(server, 'max_wal_size_bytes'),
    unknownReason: wal !== undefined
      ? null
      : permitted ? 'pg_wal was not listed' : `role ${role} may not call pg_ls_waldir(), so the size of pg_wal is unknown: ${grantFor(role)}`,
  };
}

function parseCheckpoints(row: Row | undefined): CheckpointCounters {
  if (row === undefined) throw new Error('the checkpoint statistics returned no row');
  return {
    timed: number(row, 'timed'),
    requested: number(row, 'requested'),
    writeTimeMs: number(row, 'write_time_ms'),
    syncTimeMs: number(row, 'sync_time_ms'),
    buffersWritten: number(row, 'buffers_written'),
    backendFsyncs: numberOrNull(row, 'backend_fsyncs'),
    statsReset: dateOrNull(row, 'stats_reset'),
  };
}

/** Disk, pg_wal and checkpoints of the node. Free disk is measured on this host only (see local-disk.ts). */
export const storageProbe: Probe<StorageSnapshot> = {
  id: 'storage',
  title: 'Storage',
  target: 'server',
  cadenceMs: 60_000,
  minServerVersion: 100000,
  queries: (server) => ({
    server: { text: serverSql },
    tablespaces: { text: tablespacesSql },
    checkpoints: { text: checkpointsSql(server?.versionNum ?? 150000) },
  }),
  followUp(rows) {
    return rowsOf(rows, 'server')[0]?.['wal_permitted'] === true ? { wal: { text: walSql } } : {};
  },
  local: measureLocally,
  parse(rows) {
    const server = rowsOf(rows, 'server')[0];
    if (server === undefined) throw new Error('storage probe returned no server row');
    return {
      dataDirectory: stringOrNull(server, 'data_directory'),
      port: number(server, 'port'),
      startedAt: dateOrNull(server, 'started_at') ?? new Date(0),
      tablespaces: rowsOf(rows, 'tablespaces').map(parseTablespace),
      disk: parseDisk(rows),
      wal: parseWal(server, rowsOf(rows, 'wal')[0]),
      checkpoints: parseCheckpoints(rowsOf(rows, 'checkpoints')[0]),
    };
  },
  unsupportedFor(sqlstate, server) {
    if (sqlstate !== '42501') return undefined;
    const role = server?.currentUser ?? '<role>';
    return { kind: 'privilege', reason: `role ${role} may not read the storage statistics`, fix: grantFor(role) };
  },
};
