/** Every session, idle ones included, with what it waits on and how old its transaction is. */
import type { Query } from '../db/types.js';
import type { Probe } from './types.js';
import { dateOrNull, number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

export interface Session {
  readonly pid: number;
  readonly database: string | null;
  readonly user: string | null;
  readonly application: string;
  /** Client address, "local" for a Unix socket, null for background workers. */
  readonly client: string | null;
  readonly backendType: string;
  /** active, idle, idle in transaction, idle in transaction (aborted), fastpath function call, disabled; null for some background workers. */
  readonly state: string | null;
  readonly waitEventType: string | null;
  readonly waitEvent: string | null;
  /** The first 1,024 characters of the query text; fetch the rest with fullQueryText(). */
  readonly query: string;
  /** Length of the full text the server keeps (bounded by track_activity_query_size). */
  readonly queryLength: number;
  readonly queryId: string | null;
  readonly backendStart: Date | null;
  readonly xactStart: Date | null;
  readonly queryStart: Date | null;
  readonly stateChange: Date | null;
  /** Seconds since the transaction began, null outside a transaction. */
  readonly xactSeconds: number | null;
  /** Seconds since the current (or last) query began. */
  readonly querySeconds: number | null;
  /** Seconds in the current state (e.g. how long idle in transaction). */
  readonly stateSeconds: number | null;
  /** Age in transactions of this backend's xmin horizon. */
  readonly backendXminAge: number | null;
  /** The parallel group leader, for parallel workers. */
  readonly leaderPid: number | null;
}

export interface ActivitySnapshot {
  readonly sessions: readonly Session[];
}

const columns = `
  a.pid, a.datname as database, a.usename as "user", coalesce(a.application_name, '') as application,
  case when a.client_addr is not null then host(a.client_addr)
       when a.client_port = -1 then 'local' end as client,
  coalesce(a.backend_type, '') as backend_type, a.state, a.wait_event_type, a.wait_event,
  left(coalesce(a.query, ''), 1024) as query, length(a.query) as query_length, a.backend_start, a.xact_start, a.query_start, a.state_change,
  extract(epoch from now() - a.xact_start)::float8 as xact_seconds,
  extract(epoch from now() - a.query_start)::float8 as query_seconds,
  extract(epoch from now() - a.state_change)::float8 as state_seconds,
  age(a.backend_xmin)::int8 as backend_xmin_age`;

export const activityProbe: Probe<ActivitySnapshot> = {
  id: 'activity',
  title: 'Activity',
  target: 'server',
  cadenceMs: 2000,
  minServerVersion: 100000,
  queries: (server) => {
    const version = server?.versionNum ?? 150000;
    // query_id appeared in 14, leader_pid in 13.
    const queryId = version >= 140000 ? 'a.query_id::text as query_id' : 'null::text as query_id';
    const leader = version >= 130000 ? 'a.leader_pid' : 'null::int as leader_pid';
    return {
      sessions: {
        text: `select ${columns}, ${queryId}, ${leader}
                 from pg_stat_activity a
                where a.pid <> pg_backend_pid()
                  and coalesce(a.application_name, '') not like 'pgwarden%'
                order by a.pid`,
      },
    };
  },
  parse(rows) {
    return {
      sessions: rowsOf(rows, 'sessions').map((row) => ({
        pid: number(row, 'pid'),
        database: stringOrNull(row, 'database'),
        user: stringOrNull(row, 'user'),
        application: string(row, 'application'),
        client: stringOrNull(row, 'client'),
        backendType: string(row, 'backend_type'),
        state: stringOrNull(row, 'state'),
        waitEventType: stringOrNull(row, 'wait_event_type'),
        waitEvent: stringOrNull(row, 'wait_event'),
        query: string(row, 'query'),
        queryLength: number(row, 'query_length'),
        queryId: stringOrNull(row, 'query_id'),
        backendStart: dateOrNull(row, 'backend_start'),
        xactStart: dateOrNull(row, 'xact_start'),
        queryStart: dateOrNull(row, 'query_start'),
        stateChange: dateOrNull(row, 'state_change'),
        xactSeconds: numberOrNull(row, 'xact_seconds'),
        querySeconds: numberOrNull(row, 'query_seconds'),
        stateSeconds: numberOrNull(row, 'state_seconds'),
        backendXminAge: numberOrNull(row, 'backend_xmin_age'),
        leaderPid: numberOrNull(row, 'leader_pid'),
      })),
    };
  },
};

/** The full query text of one session, fetched on demand (the list carries only a prefix). */
export function fullQueryText(pid: number): Query {
  return { text: 'select query from pg_stat_activity where pid = $1', values: [pid] };
}
