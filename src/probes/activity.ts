/** Every session, idle ones included, with what it waits on and how old its transaction is. */
import type { Query } from '../db/types.js';
import type { Probe, ProbeInputs } from './types.js';
import { number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

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

/** A pgwarden session: listed apart, never in `sessions`, but it holds a connection slot. */
export interface OwnSession {
  readonly pid: number;
  readonly database: string | null;
  readonly user: string | null;
  readonly application: string;
  readonly state: string | null;
  readonly backendType: string;
}

export interface ActivitySnapshot {
  /** Every process but pgwarden's own sessions, by pid. */
  readonly sessions: readonly Session[];
  /** pgwarden's own sessions (application_name starting with "pgwarden"). */
  readonly ownSessions: readonly OwnSession[];
}

/**
 * One scan of pg_stat_activity feeds activity, connections and locks. Timestamps travel as epoch
 * seconds (parsing 400 timestamp strings costs the client more than the whole query costs the
 * server), and durations are computed against the server's clock, sent with every row.
 */
function sessionsSql(version: number): string {
  const queryId = version >= 140000 ? 'a.query_id::text' : 'null::text';
  const leader = version >= 130000 ? 'a.leader_pid' : 'null::int';
  // date_part returns float8; extract returns numeric from 14 on and costs a third of the query.
  return `select a.pid, a.datname as database, a.usename as "user", coalesce(a.application_name, '') as application,
       case when a.client_addr is not null then host(a.client_addr) when a.client_port = -1 then 'local' end as client,
       coalesce(a.backend_type, '') as backend_type, a.state, a.wait_event_type, a.wait_event,
       left(a.query, 1024) as query, length(a.query) as query_length,
       date_part('epoch', a.backend_start) as backend_start, date_part('epoch', a.xact_start) as xact_start,
       date_part('epoch', a.query_start) as query_start, date_part('epoch', a.state_change) as state_change,
       n.server_now,
       case when a.backend_xmin is not null then age(a.backend_xmin)::int8 end as backend_xmin_age,
       ${queryId} as query_id, ${leader} as leader_pid
  from pg_stat_activity a, (select date_part('epoch', statement_timestamp()) as server_now) n`;
}

/** Epoch seconds → Date, keeping null. */
function epochDate(seconds: number | null): Date | null {
  return seconds === null ? null : new Date(seconds * 1000);
}

/** Seconds from an epoch to the server's now; null when the moment is unknown. */
function since(serverNow: number, seconds: number | null): number | null {
  return seconds === null ? null : Math.max(0, serverNow - seconds);
}

export const activityProbe: Probe<ActivitySnapshot> = {
  id: 'activity',
  title: 'Activity',
  target: 'server',
  cadenceMs: 2000,
  minServerVersion: 100000,
  queries: (server) => ({ sessions: { text: sessionsSql(server?.versionNum ?? 150000) } }),
  parse(rows) {
    const sessions: Session[] = [];
    const ownSessions: OwnSession[] = [];
    for (const row of rowsOf(rows, 'sessions')) {
      const application = string(row, 'application');
      if (application.startsWith('pgwarden')) {
        ownSessions.push({
          pid: number(row, 'pid'),
          database: stringOrNull(row, 'database'),
          user: stringOrNull(row, 'user'),
          application,
          state: stringOrNull(row, 'state'),
          backendType: string(row, 'backend_type'),
        });
        continue;
      }
      const serverNow = number(row, 'server_now');
      const xactStart = numberOrNull(row, 'xact_start');
      const queryStart = numberOrNull(row, 'query_start');
      const stateChange = numberOrNull(row, 'state_change');
      sessions.push({
        pid: number(row, 'pid'),
        database: stringOrNull(row, 'database'),
        user: stringOrNull(row, 'user'),
        application,
        client: stringOrNull(row, 'client'),
        backendType: string(row, 'backend_type'),
        state: stringOrNull(row, 'state'),
        waitEventType: stringOrNull(row, 'wait_event_type'),
        waitEvent: stringOrNull(row, 'wait_event'),
        query: string(row, 'query'),
        queryLength: number(row, 'query_length'),
        queryId: stringOrNull(row, 'query_id'),
        backendStart: epochDate(numberOrNull(row, 'backend_start')),
        xactStart: epochDate(xactStart),
        queryStart: epochDate(queryStart),
        stateChange: epochDate(stateChange),
        xactSeconds: since(serverNow, xactStart),
        querySeconds: since(serverNow, queryStart),
        stateSeconds: since(serverNow, stateChange),
        backendXminAge: numberOrNull(row, 'backend_xmin_age'),
        leaderPid: numberOrNull(row, 'leader_pid'),
      });
    }
    sessions.sort((a, b) => a.pid - b.pid);
    return { sessions, ownSessions };
  },
};

/** The activity snapshot among a probe's inputs, if it was taken in the same refresh. */
export function activityInput(inputs: ProbeInputs | undefined): ActivitySnapshot | undefined {
  return inputs?.activity as ActivitySnapshot | undefined;
}

/** The full query text of one session, fetched on demand (the list carries only a prefix). */
export function fullQueryText(pid: number): Query {
  return { text: 'select query from pg_stat_activity where pid = $1', values: [pid] };
}
