/**
 * Session timeouts per login role: a role whose sessions can run a statement forever, or sit idle
 * in a transaction forever, is one bad deploy away from a pile-up. Kept consistent with PgBouncer's
 * query_timeout, which otherwise cuts the client while the server query keeps running.
 */
import { alterRoleSql, fixSql, fixedTimeouts, proposedTimeouts } from '../actions/set-role-timeouts.js';
import { formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Results } from '../probes/runner.js';
import { timeoutNames, type EffectiveTimeout, type RoleTimeouts, type TimeoutName, type TimeoutsSnapshot } from '../probes/timeouts.js';
import type { Check, Finding, Severity } from './types.js';
import { finding, snapshotOf, unknownFinding } from './helpers.js';

const id = 'timeouts';

/** The subject of a role's finding; the console's fix key reads the role back from it. */
export function roleSubject(role: string): string {
  return `role ${role}`;
}

/** The role a timeouts finding's subject names, or undefined for other subjects. */
export function roleFromSubject(subject: string): string | undefined {
  return subject.startsWith('role ') && subject.length > 'role '.length ? subject.slice('role '.length) : undefined;
}

/**
 * The roles the check judges: those that log in, minus superusers (they run maintenance that must
 * not be cut), replication roles (WAL senders) and pgwarden's own role (its sessions set their own).
 */
export function judgedRoles(snapshot: TimeoutsSnapshot): RoleTimeouts[] {
  return snapshot.roles.filter((role) => !role.superuser && !role.replication && !role.self && role.databases.length > 0);
}

/** "in every database" or "in app, reports" (of the role's connectable databases). */
function whereText(databases: readonly string[], of: readonly string[]): string {
  if (databases.length === of.length) return of.length === 1 ? `in ${of[0] ?? ''}` : 'in every database';
  const shown = databases.slice(0, 3).join(', ');
  return `in ${shown}${databases.length > 3 ? ` and ${databases.length - 3} more` : ''}`;
}

/** The databases where a timeout is disabled (0); unknown values are not counted. */
function disabledIn(role: RoleTimeouts, name: TimeoutName): string[] {
  return role.effective.filter((e) => e.name === name && e.valueMs === 0).flatMap((e) => e.databases);
}

/** The groups whose statement_timeout lets a query outlive PgBouncer's query_timeout (0 included). */
function outlivesBouncer(role: RoleTimeouts, queryTimeoutMs: number): EffectiveTimeout[] {
  return role.effective.filter((e) => e.name === 'statement_timeout' && e.valueMs !== null && (e.valueMs === 0 || e.valueMs >= queryTimeoutMs));
}

/** "0 (server) in app, reports; 30s (role in database) in billing": a timeout's values over the role's databases. */
function effectiveText(role: RoleTimeouts, name: TimeoutName): string {
  return role.effective
    .filter((e) => e.name === name)
    .map((e) => `${e.valueMs === null ? 'unknown' : e.valueMs === 0 ? '0 (disabled)' : formatDuration(e.valueMs / 1000)} from ${e.source} ${whereText(e.databases, role.databases)}`)
    .join('; ');
}

interface BouncerState {
  /** PgBouncer's query_timeout in ms when one is configured and set (> 0). */
  readonly queryTimeoutMs: number | null;
  /** An UNKNOWN finding when PgBouncer is configured but its settings could not be read. */
  readonly unknown: Finding | undefined;
}

function bouncerState(results: Results): BouncerState {
  const result = resultOf(results, 'pgbouncer-config');
  if (result.status === 'ok') {
    const seconds = result.snapshot.queryTimeoutSeconds;
    return { queryTimeoutMs: seconds !== null && seconds > 0 ? seconds * 1000 : null, unknown: undefined };
  }
  // No PgBouncer configured (unsupported) or the probe disabled (pending): nothing to compare with.
  if (result.status !== 'error') return { queryTimeoutMs: null, unknown: undefined };
  return { queryTimeoutMs: null, unknown: unknownFinding(id, `PgBouncer's settings could not be read (SHOW CONFIG): ${result.error.message}`, 'pgbouncer query_timeout') };
}

/** The finding of one role, or undefined when its timeouts are all set and consistent. */
function roleFinding(role: RoleTimeouts, queryTimeoutMs: number | null): Finding | undefined {
  const problems: string[] = [];
  let severity: Severity = 'ok';
  const missing: TimeoutName[] = [];
  for (const name of fixedTimeouts) {
    const where = disabledIn(role, name);
    if (where.length === 0) continue;
    missing.push(name);
    problems.push(`no ${name} ${whereText(where, role.databases)}`);
    severity = 'warning';
  }
  if (queryTimeoutMs !== null) {
    const over = outlivesBouncer(role, queryTimeoutMs).filter((e) => e.valueMs !== 0);
    if (over.length > 0) {
      const values = [...new Set(over.map((e) => formatDuration((e.valueMs ?? 0) / 1000)))].join(', ');
      problems.push(`statement_timeout ${values} ≥ PgBouncer's query_timeout ${formatDuration(queryTimeoutMs / 1000)} ${whereText(over.flatMap((e) => e.databases), role.databases)} (PgBouncer cuts the client first; the server query runs on)`);
      severity = 'warning';
    } else if (missing.includes('statement_timeout')) {
      problems.push(`PgBouncer's query_timeout ${formatDuration(queryTimeoutMs / 1000)} then cuts the client while the server query runs on`);
    }
  }
  const noLock = disabledIn(role, 'lock_timeout');
  if (noLock.length > 0) {
    problems.push(`no lock_timeout ${whereText(noLock, role.databases)}`);
    if (severity === 'ok') severity = 'info';
  }
  if (severity === 'ok') return undefined;
  const fix = missing.length > 0
    ? fixSql(role.name, missing)
    : severity === 'info'
      ? fixSql(role.name, ['lock_timeout'])
      // Below PgBouncer's limit with a margin, so the server always cancels first.
      : `${alterRoleSql(role.name, 'statement_timeout', `${Math.max(1, Math.floor((queryTimeoutMs ?? 0) * 0.8 / 1000))}s`)};`;
  const sessions = role.sessions === 0 ? 'no session now' : `${role.sessions} session${role.sessions === 1 ? '' : 's'} now`;
  return finding(id, {
    severity,
    subject: roleSubject(role.name),
    value: problems.length,
    threshold: null,
    warningThreshold: null,
    unit: 'problems',
    message: `role ${role.name} (${sessions}): ${problems.join('; ')}`,
    context: {
      details: {
        fix,
        databases: role.databases.join(', '),
        ...Object.fromEntries(timeoutNames.map((name) => [name, effectiveText(role, name)])),
        pgbouncerQueryTimeoutSeconds: queryTimeoutMs === null ? null : queryTimeoutMs / 1000,
      },
    },
  });
}

/** Login roles without statement_timeout or idle_in_transaction_session_timeout, or one that outlives PgBouncer's query_timeout. */
export const timeoutsCheck: Check<Record<string, never>> = {
  id,
  title: 'Session timeouts per role',
  description: 'For every login role (superusers, replication roles and pgwarden\'s own role excepted) in every database it may connect to: the statement_timeout, idle_in_transaction_session_timeout and lock_timeout its new sessions get from ALTER ROLE … IN DATABASE, ALTER ROLE, ALTER DATABASE, ALTER ROLE ALL and the server configuration, in that order. With a PgBouncer configured, its query_timeout too. Judged on the primary only (standbys replicate the same roles). One finding per role; the console sets the missing ones with O (docs/timeouts.md).',
  cadence: 'normal',
  // The main probe last (the catalogue's convention): without PgBouncer settings the check still runs.
  probes: ['pgbouncer-config', 'timeouts'],
  defaults: {},
  levels: () => ({
    warning: 'a login role with no statement_timeout or no idle_in_transaction_session_timeout in a database, or a statement_timeout at or above PgBouncer\'s query_timeout (info: no lock_timeout)',
    critical: 'none (a missing timeout is a risk, not an outage)',
  }),
  evaluate(input) {
    const { snapshot, unknown } = snapshotOf(id, input.results, 'timeouts');
    if (unknown !== undefined) return [unknown];
    // Roles and their settings are replicated: judged once, on the primary, not again on each standby.
    if (snapshot.inRecovery) return [];
    const bouncer = bouncerState(input.results);
    const roles = judgedRoles(snapshot);
    const findings = roles.flatMap((role) => roleFinding(role, bouncer.queryTimeoutMs) ?? []);
    if (bouncer.unknown !== undefined) findings.push(bouncer.unknown);
    // Only roles that fall back on the server-wide value need it; say why it is missing once.
    const blind = roles.filter((role) => role.effective.some((e) => e.valueMs === null && e.name !== 'lock_timeout'));
    if (snapshot.serverDefaultsUnknown !== null && blind.length > 0) {
      findings.push(unknownFinding(id, `${blind.length} role${blind.length === 1 ? '' : 's'} (${blind.slice(0, 3).map((r) => r.name).join(', ')}${blind.length > 3 ? ', …' : ''}) ${blind.length === 1 ? 'takes' : 'take'} a timeout from the server-wide value, which cannot be read: ${snapshot.serverDefaultsUnknown}`, 'server-wide timeouts'));
    }
    if (findings.some((f) => f.severity !== 'info')) return findings;
    if (roles.length === 0) {
      return [finding(id, {
        severity: 'ok', subject: 'cluster', value: 0, threshold: null, warningThreshold: null, unit: 'problems',
        message: 'no login role to judge (superusers, replication roles and pgwarden\'s own role are left out)',
      })];
    }
    const listed = snapshot.totalRoles > snapshot.roles.length ? ` (the first ${snapshot.roles.length} of ${snapshot.totalRoles} login roles)` : '';
    return [
      ...findings,
      finding(id, {
        severity: 'ok', subject: 'cluster', value: 0, threshold: null, warningThreshold: null, unit: 'problems',
        message: `${roles.length} login role${roles.length === 1 ? '' : 's'}${listed} ha${roles.length === 1 ? 's' : 've'} statement_timeout and idle_in_transaction_session_timeout in every database${bouncer.queryTimeoutMs === null ? '' : `, below PgBouncer's query_timeout ${formatDuration(bouncer.queryTimeoutMs / 1000)}`}`,
      }),
    ];
  },
  runbook: {
    summary: `A login role's sessions have no statement_timeout (a runaway query runs until someone notices, holding locks and the xmin horizon) or no idle_in_transaction_session_timeout (a session that forgot to commit holds its locks and stops vacuum everywhere), or a statement_timeout longer than PgBouncer's query_timeout (PgBouncer drops the client, the query runs on in the server with nobody waiting for it). Warning, not critical: nothing is wrong yet, but the next bad query has no limit. No lock_timeout is info: statement_timeout already bounds lock waits; lock_timeout only makes them fail sooner. pgwarden proposes statement_timeout ${proposedTimeouts.statement_timeout}, idle_in_transaction_session_timeout ${proposedTimeouts.idle_in_transaction_session_timeout} and lock_timeout ${proposedTimeouts.lock_timeout} (docs/timeouts.md says why).`,
    steps: [
      'Look: `select r.rolname, d.datname, s.setconfig from pg_db_role_setting s left join pg_roles r on r.oid = s.setrole left join pg_database d on d.oid = s.setdatabase;` shows every ALTER ROLE / ALTER DATABASE setting; `show statement_timeout;` in a session of the role shows what it really gets. The finding\'s details list the effective value per database and where it comes from.',
      'Ask the role\'s owners what its longest legitimate statement is (reports, batch jobs and migrations run longer than web requests). A role that needs long statements gets a longer value, or its jobs `SET statement_timeout` for themselves; never leave it unlimited.',
      `Set it: in the console, select the alert (Alerts view) or a session of the role (Activity) and press O: the plan shows the exact \`${fixSql('app')}\`, sets only the timeouts the role has none of its own of, and reads them back. Or run the SQL from the finding's details. It applies to new sessions only; behind PgBouncer, to new server connections (RECONNECT in the admin console, or wait for server_lifetime).`,
      'With PgBouncer: keep statement_timeout below PgBouncer\'s query_timeout (e.g. 60 s under 90 s), so the server cancels the query and the client gets a clean error instead of a dropped connection.',
      'Not worth a timeout (a role used only by an on-call human, say)? Silence the finding for that subject with a comment saying why, so the next engineer knows it is deliberate.',
    ],
  },
};
