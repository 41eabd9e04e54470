/**
 * Set the session timeouts of one login role (ALTER ROLE … SET): low danger. Nothing running is
 * touched: the settings apply to the role's new sessions only. Only statement_timeout and
 * idle_in_transaction_session_timeout are set, and only where the role has none of its own (or 0):
 * a value a DBA chose is never overwritten. lock_timeout is proposed in the docs but not set here:
 * how long a lock may be waited for is the application's decision more than the DBA's.
 */
import type { Row } from '../db/types.js';
import { boolean, number, string } from '../probes/values.js';
import { parseDurationMs, type TimeoutName } from '../probes/timeouts.js';
import { execute, makePlan, readOnlyRefusal, StepFailed } from './execution.js';
import { lookupSessions } from './sessions.js';
import { isPid, quoteIdent, quoteLiteral } from './sql.js';
import type { Action, ActionContext, Plan, PlanStep } from './types.js';

/**
 * What pgwarden proposes (docs/timeouts.md explains the choice). They are constants: the action
 * context carries no configuration; change them here, or set other values by hand with the SQL shown.
 */
export const proposedTimeouts: Readonly<Record<TimeoutName, string>> = {
  statement_timeout: '60s',
  idle_in_transaction_session_timeout: '10min',
  lock_timeout: '10s',
};

/** The timeouts the one-key fix sets. */
export const fixedTimeouts: readonly TimeoutName[] = ['statement_timeout', 'idle_in_transaction_session_timeout'];

/** ALTER ROLE "role" SET name = 'value', with the role quoted as an identifier and the value as a literal. */
export function alterRoleSql(role: string, name: TimeoutName, value: string): string {
  return `ALTER ROLE ${quoteIdent(role)} SET ${name} = ${quoteLiteral(value)}`;
}

/** The statements that give `role` the proposed values of `names`, as one line for a message. */
export function fixSql(role: string, names: readonly TimeoutName[] = fixedTimeouts): string {
  return names.map((name) => `${alterRoleSql(role, name, proposedTimeouts[name])};`).join(' ');
}

/** The statement that reads the role's own settings back (role-wide, not per database). */
export function readBackSql(role: string): string {
  return `SELECT unnest(setconfig) AS setting FROM pg_db_role_setting WHERE setdatabase = 0 AND setrole = (SELECT oid FROM pg_roles WHERE rolname = ${quoteLiteral(role)})`;
}

/** What planning learns about the role. */
export interface RoleFacts {
  readonly oid: number;
  readonly superuser: boolean;
  readonly canLogin: boolean;
  readonly inRecovery: boolean;
  /** The acting role is a superuser or has CREATEROLE. */
  readonly mayAlter: boolean;
  readonly sessions: number;
  /** The role's own settings (ALTER ROLE … SET), name → value as written. */
  readonly own: ReadonlyMap<string, string>;
  /** ALTER ROLE … IN DATABASE settings, which win over the role's own in their database. */
  readonly perDatabase: readonly { readonly database: string; readonly name: string; readonly value: string }[];
}

const lookupSql = `
select r.oid::int8 as oid, r.rolsuper as superuser, r.rolcanlogin as can_login, pg_is_in_recovery() as in_recovery,
       coalesce((select m.rolsuper or m.rolcreaterole from pg_roles m where m.rolname = $2), false) as may_alter,
       (select count(*) from pg_stat_activity a where a.usesysid = r.oid)::int as sessions,
       coalesce((select array_agg(c) from pg_db_role_setting s cross join lateral unnest(s.setconfig) c
                  where s.setrole = r.oid and s.setdatabase = 0), '{}') as own,
       coalesce((select json_agg(json_build_object('database', d.datname, 'setting', c) order by d.datname, c)
                   from pg_db_role_setting s join pg_database d on d.oid = s.setdatabase cross join lateral unnest(s.setconfig) c
                  where s.setrole = r.oid), '[]') as per_database
  from pg_roles r
 where r.rolname = $1`;

function splitSetting(text: string): { readonly name: string; readonly value: string } {
  const at = text.indexOf('=');
  return at < 0 ? { name: text, value: '' } : { name: text.slice(0, at), value: text.slice(at + 1) };
}

function parseFacts(row: Row): RoleFacts {
  const own = new Map<string, string>();
  const ownValue = row['own'];
  for (const entry of Array.isArray(ownValue) ? ownValue.map(String) : []) {
    const { name, value } = splitSetting(entry);
    own.set(name, value);
  }
  const perValue = row['per_database'];
  const perDatabase = (Array.isArray(perValue) ? (perValue as unknown[]) : []).flatMap((item) => {
    if (typeof item !== 'object' || item === null) return [];
    const record = item as Record<string, unknown>;
    const database = typeof record['database'] === 'string' ? record['database'] : '';
    const setting = typeof record['setting'] === 'string' ? record['setting'] : '';
    return [{ database, ...splitSetting(setting) }];
  });
  return {
    oid: number(row, 'oid'),
    superuser: boolean(row, 'superuser'),
    canLogin: boolean(row, 'can_login'),
    inRecovery: boolean(row, 'in_recovery'),
    mayAlter: boolean(row, 'may_alter'),
    sessions: number(row, 'sessions'),
    own,
    perDatabase,
  };
}

async function lookupRole(context: ActionContext, role: string): Promise<RoleFacts | undefined> {
  const rows = await context.node.query({ text: lookupSql, values: [role, context.connection.user] });
  const row = rows[0];
  return row === undefined ? undefined : parseFacts(row);
}

/** The timeouts the fix sets: those the role has no value of its own for, or 0 (disabled). */
export function missingTimeouts(own: ReadonlyMap<string, string>): TimeoutName[] {
  return fixedTimeouts.filter((name) => {
    const value = own.get(name);
    return value === undefined || parseDurationMs(value) === 0;
  });
}

function sessionsText(sessions: number): string {
  return sessions === 0 ? 'it has no session now' : `its ${sessions} session${sessions === 1 ? '' : 's'} connected now keep${sessions === 1 ? 's' : ''} the old value until ${sessions === 1 ? 'it reconnects' : 'they reconnect'}`;
}

const meaning: Readonly<Record<TimeoutName, string>> = {
  statement_timeout: 'the server cancels any statement of this role that runs longer',
  idle_in_transaction_session_timeout: 'the server ends a session of this role that stays idle inside an open transaction longer (its transaction is rolled back)',
  lock_timeout: 'a statement of this role gives up waiting for a lock after that long',
};

/** The plan's steps: one ALTER ROLE per missing timeout, then the read-back. */
export function setTimeoutSteps(role: string, names: readonly TimeoutName[], facts: Pick<RoleFacts, 'sessions' | 'own' | 'perDatabase'> | undefined): PlanStep[] {
  const steps: PlanStep[] = names.map((name) => {
    const current = facts?.own.get(name);
    const overrides = (facts?.perDatabase ?? []).filter((entry) => entry.name === name);
    const still = overrides.length === 0 ? '' : ` ALTER ROLE … IN DATABASE still wins in ${overrides.map((o) => `${o.database} (${o.value})`).join(', ')}.`;
    return {
      description: `${name} = ${proposedTimeouts[name]}${current === undefined ? '' : ` (now ${current}, that is disabled)`}: ${meaning[name]}. Applies to new sessions only: ${sessionsText(facts?.sessions ?? 0)}.${still}`,
      sql: alterRoleSql(role, name, proposedTimeouts[name]),
    };
  });
  steps.push({ description: `Read the role's settings back from pg_db_role_setting.`, sql: readBackSql(role) });
  return steps;
}

/** Why the fix cannot be applied to this role, or null. */
export function roleRefusal(role: string, facts: RoleFacts | undefined, actingRole: string): string | null {
  if (facts === undefined) return `role ${role} does not exist (no such row in pg_roles)`;
  if (facts.inRecovery) return `this node is a standby (in recovery): ALTER ROLE runs on the primary; switch to it with c`;
  if (role === actingRole) return `${role} is pgwarden's own role: its sessions set their own timeouts`;
  if (facts.superuser) return `${role} is a superuser: its sessions run maintenance (VACUUM, pg_dump, migrations) that these timeouts would cut; set them per job instead (SET statement_timeout …)`;
  if (!facts.canLogin) return `${role} cannot log in (NOLOGIN): settings of a group role do not reach its members' sessions; set them on the login roles`;
  if (!facts.mayAlter) return `${actingRole} may not ALTER ROLE ${role}: it needs CREATEROLE (and, from PostgreSQL 16, ADMIN OPTION on the role) or superuser`;
  if (missingTimeouts(facts.own).length === 0) {
    return `${role} already has ${fixedTimeouts.map((name) => `${name} = ${facts.own.get(name) ?? '?'}`).join(' and ')} of its own: nothing to set`;
  }
  return null;
}

/** Resolves the input to a role name: given, or the role of the session with that pid. */
async function roleOf(input: Plan<'role.setTimeouts'>['input'], context: ActionContext): Promise<{ readonly role: string | null; readonly why: string | null }> {
  if ('role' in input) {
    // Nothing the server could hold: refused here rather than failing to quote it.
    if (input.role === '' || input.role.includes('\0')) return { role: null, why: `not a role name: ${JSON.stringify(input.role)}` };
    return { role: input.role, why: null };
  }
  if (!isPid(input.pid)) return { role: null, why: `not a process id: ${String(input.pid)}` };
  const facts = (await lookupSessions(context, [input.pid])).get(input.pid);
  if (facts === undefined) return { role: null, why: `pid ${input.pid}: the session has ended (no such backend in pg_stat_activity)` };
  if (facts.user === null) return { role: null, why: `pid ${input.pid} is the ${facts.backendType}, a server process without a role` };
  return { role: facts.user, why: null };
}

/** Sets statement_timeout and idle_in_transaction_session_timeout for one login role. */
export const setRoleTimeouts: Action<'role.setTimeouts'> = {
  id: 'role.setTimeouts',

  async plan(input, context): Promise<Plan<'role.setTimeouts'>> {
    const common = { danger: 'low' as const, confirmToken: null };
    const unresolved = { ...common, title: 'Set timeouts', target: 'pid' in input ? `pid ${String(input.pid)}` : '-', steps: [], basis: null };
    // Read-only plans never touch the server, not even to find a session's role.
    if (context.readOnly && 'pid' in input) return makePlan('role.setTimeouts', input, context, { ...unresolved, refused: readOnlyRefusal });
    const { role, why } = await roleOf(input, context);
    if (role === null) return makePlan('role.setTimeouts', input, context, { ...unresolved, refused: why });
    const title = `Set timeouts for role ${role}`;
    if (context.readOnly) {
      return makePlan('role.setTimeouts', input, context, { ...common, title, target: `role ${role}`, steps: setTimeoutSteps(role, fixedTimeouts, undefined), refused: readOnlyRefusal, basis: null });
    }
    const facts = await lookupRole(context, role);
    const refused = roleRefusal(role, facts, context.connection.user);
    const names = facts === undefined ? fixedTimeouts : missingTimeouts(facts.own);
    return makePlan('role.setTimeouts', input, context, {
      ...common,
      title,
      target: `role ${role}${facts === undefined ? '' : ` (${facts.sessions} session${facts.sessions === 1 ? '' : 's'} now)`}`,
      steps: setTimeoutSteps(role, names.length === 0 ? fixedTimeouts : names, facts),
      refused,
      basis: facts === undefined ? null : { oid: facts.oid, role },
    });
  },

  execute(plan, context, onEvent) {
    const recheck = async (): Promise<string | null> => {
      if (plan.basis === null) return 'the role was not found when planned';
      const facts = await lookupRole(context, plan.basis.role);
      if (facts !== undefined && facts.oid !== plan.basis.oid) return `role ${plan.basis.role} was dropped and created again since it was planned: plan again`;
      return roleRefusal(plan.basis.role, facts, context.connection.user);
    };
    return execute(plan, context, onEvent, recheck, async (run) => {
      const role = plan.basis?.role ?? '?';
      const alters = plan.steps.length - 1;
      const session = await run.openSession();
      let settings: string[] = [];
      try {
        for (let index = 0; index < alters; index += 1) await run.sql(index, session, 'set for new sessions');
        const rows = await run.sql(alters, session, (result) => `pg_db_role_setting holds: ${result.map((row) => string(row, 'setting')).join(', ')}`);
        settings = rows.map((row) => string(row, 'setting'));
      } finally {
        await session.close();
      }
      const expected = plan.steps.slice(0, alters).map((step) => /SET (\w+) = /.exec(step.sql ?? '')?.[1] ?? '');
      const missing = expected.filter((name) => !settings.some((setting) => setting.startsWith(`${name}=`)));
      if (missing.length > 0) throw new StepFailed(`ALTER ROLE ran, but pg_db_role_setting has no ${missing.join(', ')} for ${role}`);
      const set = settings.filter((setting) => expected.some((name) => setting.startsWith(`${name}=`)));
      return `role ${role} now has ${set.join(', ')} for its new sessions; sessions connected now keep their old values`;
    });
  },
};
