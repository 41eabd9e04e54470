/**
 * What cancel and terminate need to know about a backend before signalling it: who it is, whether
 * it is pgwarden's own, and whether the action's role may signal it at all (the server would
 * otherwise answer with an error or, for some processes, a bare warning).
 */
import { applicationName } from '../db/connect.js';
import type { Row } from '../db/types.js';
import { boolean, string, stringOrNull } from '../probes/values.js';
import type { ActionContext, Plan, SessionIdentity } from './types.js';

/** A backend as pg_stat_activity shows it, with what the signal checks found. */
export interface SessionFacts extends SessionIdentity {
  readonly user: string | null;
  readonly database: string | null;
  readonly application: string;
  readonly backendType: string;
  readonly state: string | null;
  /** The node's own connection, or one listed by context.ownPids. */
  readonly self: boolean;
  /** Why the action's role may not signal it: a superuser's backend, or a missing privilege. */
  readonly denied: 'superuser' | 'privilege' | null;
}

// The rules of pg_signal_backend(): a superuser may signal anyone; anyone else needs the
// privileges of the backend's role or of pg_signal_backend, and never a superuser's backend (nor,
// from 16, one without a role, such as an autovacuum worker). Asked for the action's role, which
// may not be the node's.
function lookupSql(version: number): string {
  const roleless = version >= 160000 ? `a.usesysid is null or ` : '';
  return `
select a.pid, a.usename as "user", a.datname as database, coalesce(a.application_name, '') as application,
       coalesce(a.backend_type, '') as backend_type, a.state,
       (extract(epoch from a.backend_start) * 1000000)::int8::text as started_us,
       a.pid = pg_backend_pid() as self,
       case when coalesce(me.rolsuper, false) then null
            when ${roleless}coalesce(t.rolsuper, false) then 'superuser'
            when not (coalesce(pg_has_role($2, a.usesysid, 'USAGE'), false) or pg_has_role($2, 'pg_signal_backend', 'USAGE')) then 'privilege'
       end as denied
  from pg_stat_activity a
  left join pg_roles t on t.oid = a.usesysid
  left join (select rolsuper from pg_roles where rolname = $2) me on true
 where a.pid = any($1::int[])`;
}

// Server processes that are not sessions: signalling them is refused by the server or harmful.
const auxiliary = new Set(['autovacuum launcher', 'background writer', 'checkpointer', 'walwriter', 'startup', 'walreceiver', 'archiver', 'logger', 'stats collector', 'io worker']);

function parse(row: Row, own: ReadonlySet<number>): SessionFacts {
  const pid = Number(row['pid']);
  const denied = stringOrNull(row, 'denied');
  return {
    pid,
    startedUs: string(row, 'started_us'),
    user: stringOrNull(row, 'user'),
    database: stringOrNull(row, 'database'),
    application: string(row, 'application'),
    backendType: string(row, 'backend_type'),
    state: stringOrNull(row, 'state'),
    self: boolean(row, 'self') || own.has(pid),
    denied: denied === 'superuser' || denied === 'privilege' ? denied : null,
  };
}

/** The live backends among `pids`, by pid (an ended one is simply absent). */
export async function lookupSessions(context: ActionContext, pids: readonly number[]): Promise<Map<number, SessionFacts>> {
  const own = new Set(context.ownPids?.() ?? []);
  const version = (await context.node.serverInfo()).versionNum;
  const rows = await context.node.query({ text: lookupSql(version), values: [pids, context.connection.user] });
  return new Map(rows.map((row) => parse(row, own)).map((facts) => [facts.pid, facts]));
}

/** "pid 4242 (alice@app, psql)". */
export function describeSession(pid: number, facts: SessionFacts | undefined): string {
  if (facts === undefined) return `pid ${pid}`;
  const who = facts.user === null ? facts.backendType : `${facts.user}@${facts.database ?? '?'}`;
  return facts.application === '' ? `pid ${pid} (${who})` : `pid ${pid} (${who}, ${facts.application})`;
}

/** True for a session of pgwarden itself: it can never be targeted. */
export function isOwnSession(facts: SessionFacts): boolean {
  return facts.self || facts.application.startsWith(applicationName);
}

/** Why this backend may not be signalled, or null; `undefined` facts mean it has ended. */
export function sessionRefusal(pid: number, facts: SessionFacts | undefined, role: string): string | null {
  if (facts === undefined) return `pid ${pid}: the session has ended (no such backend in pg_stat_activity)`;
  if (isOwnSession(facts)) return `pid ${pid} is pgwarden's own session (${facts.application === '' ? 'this console' : facts.application}): pgwarden never signals itself`;
  if (auxiliary.has(facts.backendType)) return `pid ${pid} is the ${facts.backendType}, a server process, not a session`;
  if (facts.denied === 'superuser') return `pid ${pid} belongs to ${facts.user === null ? 'no role' : `the superuser ${facts.user}`}: only a superuser may signal it, and ${role} is not one`;
  if (facts.denied === 'privilege') return `${role} may not signal pid ${pid}: it needs to be a member of ${facts.user ?? 'its role'} or of pg_signal_backend`;
  return null;
}

/** Why the session planned is no longer the one there, or null when it still is. */
export function identityRefusal(planned: SessionIdentity, facts: SessionFacts | undefined, role: string): string | null {
  if (facts !== undefined && facts.startedUs !== planned.startedUs) {
    return `pid ${planned.pid}: the session has ended, and the pid now belongs to another session: nothing was signalled`;
  }
  return sessionRefusal(planned.pid, facts, role);
}

/** Re-checks a single-session plan: the session must still be there and still be the same one. */
export async function recheckSession(plan: Plan<'session.cancel' | 'session.terminate'>, context: ActionContext): Promise<string | null> {
  if (plan.basis === null) return `pid ${plan.input.pid}: the session has ended`;
  const facts = (await lookupSessions(context, [plan.input.pid])).get(plan.input.pid);
  return identityRefusal(plan.basis, facts, context.connection.user);
}
