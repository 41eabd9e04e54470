/**
 * The session timeouts each login role gets in each database it may connect to: statement_timeout,
 * idle_in_transaction_session_timeout and lock_timeout, as ALTER ROLE … IN DATABASE, ALTER ROLE,
 * ALTER DATABASE, ALTER ROLE ALL (pg_db_role_setting) and the server-wide value resolve them.
 *
 * The server-wide value cannot be read from pgwarden's own session: pgwarden sets all three timeouts
 * on its connections (pg_settings then says source "client" and shows pgwarden's value). It comes
 * from the configuration files instead (pg_show_all_file_settings(), superuser or an explicit
 * GRANT), falling back to the built-in default when no file sets it; without that privilege it is
 * unknown (null), never guessed.
 */
import type { Row } from '../db/types.js';
import type { Probe } from './types.js';
import { boolean, number, rowsOf, string, stringOrNull } from './values.js';

/** The three timeouts, in the order findings and plans list them. */
export const timeoutNames = ['statement_timeout', 'idle_in_transaction_session_timeout', 'lock_timeout'] as const;

export type TimeoutName = (typeof timeoutNames)[number];

/** The server-wide value of one timeout, as a session gets it when no role or database setting applies. */
export interface ServerTimeout {
  readonly name: TimeoutName;
  /** Milliseconds (0 = disabled); null when pgwarden's role may not read it. */
  readonly valueMs: number | null;
  /** configuration file, default, command line…; null when unknown. */
  readonly source: string | null;
}

/** One ALTER ROLE / ALTER DATABASE setting of a timeout, from pg_db_role_setting. */
export interface TimeoutSetting {
  /** null: every role (ALTER DATABASE … SET, or ALTER ROLE ALL). */
  readonly role: string | null;
  /** null: every database (ALTER ROLE … SET without IN DATABASE). */
  readonly database: string | null;
  readonly name: TimeoutName;
  /** As written, e.g. "30s" or "300000". */
  readonly value: string;
  /** Milliseconds; null when the text is not a duration pgwarden can read. */
  readonly valueMs: number | null;
}

/** Where an effective value comes from, most specific first. */
export type TimeoutSource = 'role in database' | 'role' | 'database' | 'all roles' | 'server';

/** The value of one timeout for a role in some databases (grouped: same value, same source). */
export interface EffectiveTimeout {
  readonly name: TimeoutName;
  /** Milliseconds, 0 = disabled; null when it comes from a server-wide value that cannot be read. */
  readonly valueMs: number | null;
  readonly source: TimeoutSource;
  readonly databases: readonly string[];
}

/** A login role and the timeouts its new sessions get. */
export interface RoleTimeouts {
  readonly name: string;
  readonly superuser: boolean;
  readonly replication: boolean;
  /** The role pgwarden connects as. */
  readonly self: boolean;
  /** Its sessions now (pg_stat_activity). */
  readonly sessions: number;
  /** The databases that allow connections and on which it has CONNECT. */
  readonly databases: readonly string[];
  /** Per timeout, grouped by value and source over `databases`. */
  readonly effective: readonly EffectiveTimeout[];
}

export interface TimeoutsSnapshot {
  /** A standby shows its primary's roles and settings (they are replicated): the check reports them on the primary only. */
  readonly inRecovery: boolean;
  readonly serverDefaults: readonly ServerTimeout[];
  /** Why the server-wide values are unknown, with the fix; null when they were read. */
  readonly serverDefaultsUnknown: string | null;
  /** Databases that allow connections, templates excluded. */
  readonly databases: readonly string[];
  /** Every pg_db_role_setting entry for the three timeouts. */
  readonly settings: readonly TimeoutSetting[];
  /** Login roles, up to roleListLimit, by name. */
  readonly roles: readonly RoleTimeouts[];
  readonly totalRoles: number;
}

/** How many login roles the snapshot lists. */
export const roleListLimit = 500;

// Sources whose value is the server's own; any other source (client, user, database, session)
// means the session's value hides the server-wide one.
const serverSources = new Set(['default', 'configuration file', 'command line', 'environment variable', 'override']);

const unitMs: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Milliseconds of a duration as PostgreSQL reads these settings ("30s", "5min", "300000", "1.5s");
 * a bare number is in `defaultUnit`. null for text PostgreSQL would not accept.
 */
export function parseDurationMs(text: string, defaultUnit: keyof typeof unitMs = 'ms'): number | null {
  const match = /^\s*'?\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|ms|s|min|h|d)?\s*'?\s*$/.exec(text);
  if (match === null) return null;
  const factor = unitMs[match[2] ?? defaultUnit];
  if (factor === undefined) return null;
  // PostgreSQL rounds to the setting's unit (ms).
  return Math.round(Number(match[1]) * factor);
}

function isTimeoutName(name: string): name is TimeoutName {
  return (timeoutNames as readonly string[]).includes(name);
}

const rolesSql = `
with dbs as (
  select oid, datname from pg_database where datallowconn and not datistemplate
)
select r.rolname as name, r.rolsuper as superuser, r.rolreplication as replication, r.rolname = current_user as self,
       (select count(*) from pg_stat_activity a where a.usesysid = r.oid)::int as sessions,
       coalesce((select array_agg(d.datname::text order by d.datname) from dbs d where has_database_privilege(r.oid, d.oid, 'CONNECT')), '{}') as databases,
       (count(*) over ())::int as total_roles
  from pg_roles r
 where r.rolcanlogin
 order by r.rolname
 limit ${roleListLimit}`;

// setrole/setdatabase 0 mean "every role" / "every database"; an entry is "name=value".
const settingsSql = `
select r.rolname as role, d.datname as database, split_part(c, '=', 1) as name, substr(c, strpos(c, '=') + 1) as value
  from pg_db_role_setting s
  left join pg_roles r on r.oid = s.setrole
  left join pg_database d on d.oid = s.setdatabase
 cross join lateral unnest(s.setconfig) c
 where split_part(c, '=', 1) = any($1)
   and (s.setrole = 0 or r.oid is not null) and (s.setdatabase = 0 or d.oid is not null)
 order by 1 nulls first, 2 nulls first, 3`;

const serverSql = `
select name, setting, source, boot_val, pg_is_in_recovery() as in_recovery,
       has_function_privilege('pg_catalog.pg_show_all_file_settings()', 'EXECUTE') as can_read_files
  from pg_settings where name = any($1)`;

// Only the entry that takes effect (applied) counts; postgresql.auto.conf (ALTER SYSTEM) is included.
const fileSql = `
select name, setting from pg_catalog.pg_show_all_file_settings() where name = any($1) and applied and error is null order by seqno`;

function serverDefaults(rows: readonly Row[], fileRows: readonly Row[] | undefined): { defaults: ServerTimeout[]; unknown: string | null } {
  const fromFile = new Map<string, string>();
  for (const row of fileRows ?? []) fromFile.set(string(row, 'name'), string(row, 'setting'));
  let hidden = false;
  const defaults = timeoutNames.map((name): ServerTimeout => {
    const row = rows.find((candidate) => string(candidate, 'name') === name);
    if (row === undefined) return { name, valueMs: null, source: null };
    const source = string(row, 'source');
    if (serverSources.has(source)) return { name, valueMs: parseDurationMs(string(row, 'setting')), source };
    if (fileRows === undefined) {
      hidden = true;
      return { name, valueMs: null, source: null };
    }
    const file = fromFile.get(name);
    if (file !== undefined) return { name, valueMs: parseDurationMs(file), source: 'configuration file' };
    return { name, valueMs: parseDurationMs(string(row, 'boot_val')), source: 'default' };
  });
  const unknown = hidden
    ? "the server-wide timeouts are hidden behind pgwarden's own session settings and pgwarden's role may not read the configuration files: GRANT EXECUTE ON FUNCTION pg_show_all_file_settings() TO <pgwarden's role>;"
    : null;
  return { defaults, unknown };
}

function parseSetting(row: Row): TimeoutSetting | undefined {
  const name = string(row, 'name');
  if (!isTimeoutName(name)) return undefined;
  const value = string(row, 'value');
  return { role: stringOrNull(row, 'role'), database: stringOrNull(row, 'database'), name, value, valueMs: parseDurationMs(value) };
}

/** The value of one timeout for a role in a database, and where it comes from (PostgreSQL's precedence). */
export function effectiveTimeout(
  role: string,
  database: string,
  name: TimeoutName,
  settings: readonly TimeoutSetting[],
  defaults: readonly ServerTimeout[],
): { readonly valueMs: number | null; readonly source: TimeoutSource } {
  const levels: readonly [TimeoutSource, string | null, string | null][] = [
    ['role in database', role, database],
    ['role', role, null],
    ['database', null, database],
    ['all roles', null, null],
  ];
  for (const [source, forRole, inDatabase] of levels) {
    const setting = settings.find((s) => s.name === name && s.role === forRole && s.database === inDatabase);
    if (setting !== undefined) return { valueMs: setting.valueMs, source };
  }
  return { valueMs: defaults.find((d) => d.name === name)?.valueMs ?? null, source: 'server' };
}

/** A role's timeouts over its databases, grouped by value and source. */
export function effectiveTimeouts(role: string, databases: readonly string[], settings: readonly TimeoutSetting[], defaults: readonly ServerTimeout[]): EffectiveTimeout[] {
  const groups: { name: TimeoutName; valueMs: number | null; source: TimeoutSource; databases: string[] }[] = [];
  for (const name of timeoutNames) {
    for (const database of databases) {
      const { valueMs, source } = effectiveTimeout(role, database, name, settings, defaults);
      const group = groups.find((g) => g.name === name && g.valueMs === valueMs && g.source === source);
      if (group === undefined) groups.push({ name, valueMs, source, databases: [database] });
      else group.databases.push(database);
    }
  }
  return groups;
}

function stringArray(row: Row, key: string): string[] {
  const value = row[key];
  return Array.isArray(value) ? value.map(String) : [];
}

/** Every login role's effective timeouts, from pg_db_role_setting and the server-wide values. */
export const timeoutsProbe: Probe<TimeoutsSnapshot> = {
  id: 'timeouts',
  title: 'Timeouts',
  target: 'server',
  // Role settings change rarely; the check runs every 5 minutes.
  cadenceMs: 300_000,
  minServerVersion: 100000,
  queries: () => ({
    server: { text: serverSql, values: [[...timeoutNames]] },
    settings: { text: settingsSql, values: [[...timeoutNames]] },
    databases: { text: `select datname::text as name from pg_database where datallowconn and not datistemplate order by datname` },
    roles: { text: rolesSql },
  }),
  followUp(rows) {
    // The files are read only with the privilege: naming the function without it fails the query.
    const allowed = rowsOf(rows, 'server').some((row) => boolean(row, 'can_read_files'));
    return allowed ? { files: { text: fileSql, values: [[...timeoutNames]] } } : {};
  },
  parse(rows) {
    const { defaults, unknown } = serverDefaults(rowsOf(rows, 'server'), rows['files']);
    const settings = rowsOf(rows, 'settings').flatMap((row) => parseSetting(row) ?? []);
    const roleRows = rowsOf(rows, 'roles');
    const first = roleRows[0];
    return {
      inRecovery: rowsOf(rows, 'server').some((row) => boolean(row, 'in_recovery')),
      serverDefaults: defaults,
      serverDefaultsUnknown: unknown,
      databases: rowsOf(rows, 'databases').map((row) => string(row, 'name')),
      settings,
      roles: roleRows.map((row) => {
        const name = string(row, 'name');
        const databases = stringArray(row, 'databases');
        return {
          name,
          superuser: boolean(row, 'superuser'),
          replication: boolean(row, 'replication'),
          self: boolean(row, 'self'),
          sessions: number(row, 'sessions'),
          databases,
          effective: effectiveTimeouts(name, databases, settings, defaults),
        };
      }),
      totalRoles: first === undefined ? 0 : number(first, 'total_roles'),
    };
  },
};
