/** The server itself: version, uptime, role, timeline, key settings, checksums, pending restarts. */
import type { Row } from '../db/types.js';
import type { Probe } from './types.js';
import { boolean, dateOrNull, number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

export interface ServerSetting {
  readonly name: string;
  /**
   * The value in force for the server's sessions; null for the timeouts pgwarden sets on its own
   * sessions (source "client"), whose server-wide value a non-superuser cannot see.
   */
  readonly setting: string | null;
  /** pg_settings.source: default, configuration file, command line, client… */
  readonly source: string;
  /** pg_settings.unit, e.g. "8kB" or "ms"; null when unitless. */
  readonly unit: string | null;
  readonly pendingRestart: boolean;
}

export interface ServerSnapshot {
  readonly version: string;
  readonly versionNum: number;
  readonly systemIdentifier: string;
  readonly startedAt: Date;
  readonly uptimeSeconds: number;
  readonly role: 'primary' | 'standby';
  readonly timeline: number | null;
  readonly dataChecksums: boolean;
  readonly maxConnections: number;
  /** Slots reserved for superusers (and, from 16, for pg_use_reserved_connections). */
  readonly reservedConnections: number;
  readonly settings: readonly ServerSetting[];
  /** Settings changed in the config files that take effect only after a restart. */
  readonly pendingRestart: readonly string[];
  /** When the settings were read: pg_settings is costly to scan, so it is read once a minute. */
  readonly settingsAt: Date;
}

/** How long the settings read from pg_settings are reused. */
export const settingsCadenceMs = 60_000;

/** Settings a DBA reads first, shown on the overview and used by the checks. */
export const keySettings = [
  'max_connections', 'superuser_reserved_connections', 'shared_buffers', 'work_mem', 'maintenance_work_mem',
  'effective_cache_size', 'max_wal_size', 'min_wal_size', 'wal_level', 'archive_mode', 'archive_command',
  'synchronous_commit', 'synchronous_standby_names', 'max_wal_senders', 'max_replication_slots', 'hot_standby',
  'autovacuum', 'autovacuum_max_workers', 'autovacuum_naptime', 'statement_timeout', 'lock_timeout',
  'idle_in_transaction_session_timeout', 'track_io_timing', 'shared_preload_libraries', 'data_checksums',
  'max_locks_per_transaction', 'checkpoint_timeout', 'random_page_cost', 'effective_io_concurrency',
] as const;

export const serverProbe: Probe<ServerSnapshot> = {
  id: 'server',
  title: 'Server',
  target: 'server',
  cadenceMs: 10_000,
  minServerVersion: 100000,
  queries: (_server, previous) => ({
    server: {
      text: `select current_setting('server_version') as version,
                    current_setting('server_version_num')::int as version_num,
                    (select system_identifier::text from pg_control_system()) as system_identifier,
                    pg_postmaster_start_time() as started_at,
                    extract(epoch from now() - pg_postmaster_start_time())::float8 as uptime_seconds,
                    pg_is_in_recovery() as in_recovery,
                    case when pg_is_in_recovery()
                         then coalesce((select received_tli from pg_stat_wal_receiver), (select timeline_id from pg_control_checkpoint()))
                         -- The checkpoint's timeline lags a promotion until the next checkpoint; the current WAL file's name does not.
                         else ('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::int end as timeline,
                    current_setting('data_checksums') = 'on' as data_checksums,
                    current_setting('max_connections')::int as max_connections,
                    current_setting('superuser_reserved_connections')::int
                      + coalesce(current_setting('reserved_connections', true)::int, 0) as reserved_connections`,
    },
    ...(previous !== undefined && Date.now() - previous.snapshot.settingsAt.getTime() < settingsCadenceMs
      ? {}
      : {
          settings: {
            text: `select name, setting, unit, source, pending_restart from pg_settings where name = any($1) or pending_restart order by name`,
            values: [[...keySettings]],
          },
        }),
  }),
  parse(rows, context) {
    const row = rowsOf(rows, 'server')[0];
    if (row === undefined) throw new Error('server probe returned no row');
    const previous = context.previous;
    if (rows['settings'] === undefined && previous !== undefined) {
      return { ...parseServerRow(row), settings: previous.settings, pendingRestart: previous.pendingRestart, settingsAt: previous.settingsAt };
    }
    const settings = rowsOf(rows, 'settings').map((setting) => ({
      name: string(setting, 'name'),
      setting: string(setting, 'source') === 'client' ? null : string(setting, 'setting'),
      source: string(setting, 'source'),
      unit: stringOrNull(setting, 'unit'),
      pendingRestart: boolean(setting, 'pending_restart'),
    }));
    return {
      ...parseServerRow(row),
      settings: settings.filter((setting) => (keySettings as readonly string[]).includes(setting.name)),
      pendingRestart: settings.filter((setting) => setting.pendingRestart).map((setting) => setting.name),
      settingsAt: context.now,
    };
  },
};

type ServerRow = Omit<ServerSnapshot, 'settings' | 'pendingRestart' | 'settingsAt'>;

function parseServerRow(row: Row): ServerRow {
  return {
    version: string(row, 'version'),
    versionNum: number(row, 'version_num'),
    systemIdentifier: string(row, 'system_identifier'),
    startedAt: dateOrNull(row, 'started_at') ?? new Date(0),
    uptimeSeconds: number(row, 'uptime_seconds'),
    role: boolean(row, 'in_recovery') ? 'standby' : 'primary',
    timeline: numberOrNull(row, 'timeline'),
    dataChecksums: boolean(row, 'data_checksums'),
    maxConnections: number(row, 'max_connections'),
    reservedConnections: number(row, 'reserved_connections'),
  };
}
