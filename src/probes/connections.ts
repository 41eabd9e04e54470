/**
 * Connection slots: who holds the max_connections slots (by state, database, user, application)
 * and how many are left for ordinary roles. pgwarden's own sessions count: they use slots too.
 */
import type { Row } from '../db/types.js';
import { activityInput, type ActivitySnapshot } from './activity.js';
import type { Probe } from './types.js';
import { boolean, number, numberOrNull, rowsOf, stringOrNull } from './values.js';

export interface CountEntry {
  /** The state, database, user, application or backend type; null where PostgreSQL has none. */
  readonly name: string | null;
  readonly count: number;
  /** How many of them are pgwarden's own sessions. */
  readonly pgwarden: number;
}

export interface Breakdown {
  /** The largest groups first, at most topEntries of them. */
  readonly entries: readonly CountEntry[];
  /** Sessions in the groups left out of entries. */
  readonly otherCount: number;
}

export interface ConnectionsSnapshot {
  /** Client backends (backend_type 'client backend'), pgwarden's included. */
  readonly clientBackends: number;
  readonly pgwardenSessions: number;
  readonly byState: Breakdown;
  readonly byDatabase: Breakdown;
  readonly byUser: Breakdown;
  readonly byApplication: Breakdown;
  /** Every process in pg_stat_activity by backend_type, client backends included. */
  readonly byBackendType: readonly CountEntry[];
  readonly walSenders: number;
  readonly autovacuumWorkers: number;
  /** Parallel workers, logical replication and extension workers (max_worker_processes). */
  readonly backgroundWorkers: number;
  /** The remaining auxiliary processes: checkpointer, walwriter, autovacuum launcher… */
  readonly otherProcesses: number;
  readonly maxConnections: number;
  readonly superuserReservedConnections: number;
  /** reserved_connections (for pg_use_reserved_connections), from 16; null before. */
  readonly reservedConnections: number | null;
  readonly reservedSlots: number;
  /** max_connections minus the reserved slots: what ordinary roles can use. */
  readonly usableSlots: number;
  /** Slots in use: client backends, plus walsenders before 12 (they shared max_connections then). */
  readonly usedSlots: number;
  /** usedSlots / usableSlots; above 1 when privileged roles use reserved slots; null without usable slots. */
  readonly usedFraction: number | null;
  /** Slots left for ordinary roles, never below 0. */
  readonly slotsLeft: number;
}

/** Groups kept per breakdown; the rest is summed into otherCount. */
export const topEntries = 20;

// Processes that take no max_connections slot and are not background workers (max_worker_processes).
const auxiliaryTypes = [
  'autovacuum launcher', 'background writer', 'checkpointer', 'walwriter', 'archiver', 'startup',
  'walreceiver', 'stats collector', 'logger', 'walsummarizer', 'slotsync worker', 'io worker',
];

const countsSql = `
with clients as (
  select a.state, a.datname, a.usename, a.application_name,
         coalesce(a.application_name, '') like 'pgwarden%' as own
    from pg_stat_activity a
   where a.backend_type = 'client backend'
), counts as (
  select 'state' as dimension, state as name, count(*) as count, count(*) filter (where own) as pgwarden from clients group by state
  union all
  select 'database', datname::text, count(*), count(*) filter (where own) from clients group by datname
  union all
  select 'user', usename::text, count(*), count(*) filter (where own) from clients group by usename
  union all
  select 'application', application_name, count(*), count(*) filter (where own) from clients group by application_name
  union all
  select 'backend_type', a.backend_type, count(*), count(*) filter (where a.backend_type = 'client backend' and coalesce(a.application_name, '') like 'pgwarden%')
    from pg_stat_activity a group by a.backend_type
), ranked as (
  select dimension, name, count, pgwarden,
         sum(count) over (partition by dimension) as dimension_total,
         row_number() over (partition by dimension order by count desc, name) as rank
    from counts
)
select dimension, name, count, pgwarden, dimension_total
  from ranked
 where rank <= $1 or dimension = 'backend_type'
 order by dimension, rank`;

/** Client backends by state, database, user and application, against the slots ordinary roles can use. */
export const connectionsProbe: Probe<ConnectionsSnapshot> = {
  id: 'connections',
  title: 'Connections',
  target: 'server',
  cadenceMs: 2000,
  minServerVersion: 100000,
  inputs: ['activity'],
  queries: (server, _previous, inputs) => {
    const version = server?.versionNum ?? 150000;
    const reserved = version >= 160000 ? "current_setting('reserved_connections')::int" : 'null::int';
    return {
      slots: {
        text: `select current_setting('max_connections')::int as max_connections,
                      current_setting('superuser_reserved_connections')::int as superuser_reserved_connections,
                      ${reserved} as reserved_connections,
                      current_setting('server_version_num')::int >= 120000 as walsenders_apart`,
      },
      // With this refresh's activity snapshot at hand, counting scans nothing again.
      ...(activityInput(inputs) === undefined ? { counts: { text: countsSql, values: [topEntries] } } : {}),
    };
  },
  parse(rows, context) {
    const slots = rowsOf(rows, 'slots')[0];
    if (slots === undefined) throw new Error('connections probe returned no settings row');
    const activity = activityInput(context.inputs);
    const counts = activity === undefined ? rowsOf(rows, 'counts') : countsFromActivity(activity);
    const byState = breakdown(counts, 'state');
    const byBackendType = entriesOf(counts, 'backend_type');
    const ofType = (type: string): number => byBackendType.find((entry) => entry.name === type)?.count ?? 0;
    const clientBackends = byState.entries.reduce((sum, entry) => sum + entry.count, byState.otherCount);
    const walSenders = ofType('walsender');
    const autovacuumWorkers = ofType('autovacuum worker');
    const otherProcesses = byBackendType.filter((entry) => entry.name !== null && auxiliaryTypes.includes(entry.name)).reduce((sum, entry) => sum + entry.count, 0);
    const allProcesses = byBackendType.reduce((sum, entry) => sum + entry.count, 0);
    const maxConnections = number(slots, 'max_connections');
    const superuserReservedConnections = number(slots, 'superuser_reserved_connections');
    const reservedConnections = numberOrNull(slots, 'reserved_connections');
    const reservedSlots = superuserReservedConnections + (reservedConnections ?? 0);
    const usableSlots = maxConnections - reservedSlots;
    const usedSlots = clientBackends + (boolean(slots, 'walsenders_apart') ? 0 : walSenders);
    return {
      clientBackends,
      pgwardenSessions: byState.entries.reduce((sum, entry) => sum + entry.pgwarden, 0),
      byState,
      byDatabase: breakdown(counts, 'database'),
      byUser: breakdown(counts, 'user'),
      byApplication: breakdown(counts, 'application'),
      byBackendType,
      walSenders,
      autovacuumWorkers,
      backgroundWorkers: allProcesses - clientBackends - walSenders - autovacuumWorkers - otherProcesses,
      otherProcesses,
      maxConnections,
      superuserReservedConnections,
      reservedConnections,
      reservedSlots,
      usableSlots,
      usedSlots,
      usedFraction: usableSlots > 0 ? usedSlots / usableSlots : null,
      slotsLeft: Math.max(0, usableSlots - usedSlots),
    };
  },
};

function entriesOf(counts: readonly Row[], dimension: string): CountEntry[] {
  return counts
    .filter((row) => row['dimension'] === dimension)
    .map((row) => ({ name: stringOrNull(row, 'name'), count: number(row, 'count'), pgwarden: number(row, 'pgwarden') }));
}

function breakdown(counts: readonly Row[], dimension: string): Breakdown {
  const entries = entriesOf(counts, dimension);
  const first = counts.find((row) => row['dimension'] === dimension);
  const total = first === undefined ? 0 : number(first, 'dimension_total');
  return { entries, otherCount: total - entries.reduce((sum, entry) => sum + entry.count, 0) };
}

/** The rows countsSql would return, computed from an activity snapshot (same ranking and totals). */
export function countsFromActivity(activity: ActivitySnapshot): Row[] {
  const processes = [
    ...activity.sessions.map((s) => ({ ...s, own: false })),
    ...activity.ownSessions.map((s) => ({ ...s, own: true })),
  ];
  const clients = processes.filter((p) => p.backendType === 'client backend');
  const rows: Row[] = [];
  const group = (dimension: string, items: typeof processes, key: (p: (typeof processes)[number]) => string | null, limit: number): void => {
    const groups = new Map<string | null, { count: number; pgwarden: number }>();
    for (const item of items) {
      const name = key(item);
      const entry = groups.get(name) ?? { count: 0, pgwarden: 0 };
      entry.count += 1;
      if (item.own && item.backendType === 'client backend') entry.pgwarden += 1;
      groups.set(name, entry);
    }
    const ranked = [...groups].sort(([nameA, a], [nameB, b]) => b.count - a.count || compareNames(nameA, nameB));
    for (const [name, entry] of ranked.slice(0, limit)) {
      rows.push({ dimension, name, count: entry.count, pgwarden: entry.pgwarden, dimension_total: items.length });
    }
  };
  group('application', clients, (p) => p.application, topEntries);
  group('backend_type', processes, (p) => p.backendType, Number.POSITIVE_INFINITY);
  group('database', clients, (p) => p.database, topEntries);
  group('state', clients, (p) => p.state, topEntries);
  group('user', clients, (p) => p.user, topEntries);
  return rows;
}

/** SQL's ascending order with NULLs last. */
function compareNames(a: string | null, b: string | null): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  return a < b ? -1 : 1;
}
