import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, type ActionContext } from '../../src/actions/index.js';
import { ActionDesk } from '../../src/app/action-desk.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { PgNode } from '../../src/db/node.js';
import { setRoleTimeouts, alterRoleSql, fixSql, missingTimeouts, readBackSql, roleRefusal, setTimeoutSteps } from '../../src/actions/set-role-timeouts.js';
import { judgedRoles, roleFromSubject, roleSubject, timeoutsCheck } from '../../src/checks/timeouts.js';
import type { Selection } from '../../src/screens/types.js';
import { parseBouncerSeconds, type PgBouncerConfigSnapshot } from '../../src/probes/pgbouncer-config.js';
import { effectiveTimeout, effectiveTimeouts, parseDurationMs, type ServerTimeout, type TimeoutSetting, type TimeoutsSnapshot } from '../../src/probes/timeouts.js';
import { errorResult, okResults, resultsWith, run, summary } from '../fixtures/checks.js';
import { okResult, pgbouncerConfigSnapshot, timeoutsSnapshot } from '../fixtures/snapshots.js';

describe('the ALTER ROLE statements of the timeouts fix', () => {
  it('quotes the role as an identifier and the value as a literal', () => {
    expect(alterRoleSql('app', 'statement_timeout', '60s')).toBe(`ALTER ROLE "app" SET statement_timeout = '60s'`);
    // Upper case, spaces, double quotes and semicolons stay inside the identifier.
    expect(alterRoleSql('Billing Team', 'statement_timeout', '60s')).toBe(`ALTER ROLE "Billing Team" SET statement_timeout = '60s'`);
    expect(alterRoleSql('x"; DROP ROLE postgres; --', 'lock_timeout', '10s')).toBe(`ALTER ROLE "x""; DROP ROLE postgres; --" SET lock_timeout = '10s'`);
    expect(alterRoleSql('app', 'statement_timeout', "1s'; DROP")).toBe(`ALTER ROLE "app" SET statement_timeout = '1s''; DROP'`);
    expect(() => alterRoleSql('', 'statement_timeout', '1s')).toThrow('cannot be empty');
    expect(() => alterRoleSql('a\0b', 'statement_timeout', '1s')).toThrow('NUL');
  });

  it('proposes statement_timeout 60s and idle_in_transaction_session_timeout 10min, as one line for messages', () => {
    expect(fixSql('app')).toBe(`ALTER ROLE "app" SET statement_timeout = '60s'; ALTER ROLE "app" SET idle_in_transaction_session_timeout = '10min';`);
    expect(fixSql('app', ['lock_timeout'])).toBe(`ALTER ROLE "app" SET lock_timeout = '10s';`);
  });

  it('reads the settings back with the role name as a literal (a backslash makes it E\'\')', () => {
    expect(readBackSql("o'brien")).toBe(`SELECT unnest(setconfig) AS setting FROM pg_db_role_setting WHERE setdatabase = 0 AND setrole = (SELECT oid FROM pg_roles WHERE rolname = 'o''brien')`);
    expect(readBackSql('a\\b')).toContain(`rolname = E'a\\\\b'`);
  });

  it('sets only what the role has none of its own of, or has disabled', () => {
    expect(missingTimeouts(new Map())).toEqual(['statement_timeout', 'idle_in_transaction_session_timeout']);
    expect(missingTimeouts(new Map([['statement_timeout', '30s']]))).toEqual(['idle_in_transaction_session_timeout']);
    expect(missingTimeouts(new Map([['statement_timeout', '0'], ['idle_in_transaction_session_timeout', '5min']]))).toEqual(['statement_timeout']);
    expect(missingTimeouts(new Map([['statement_timeout', '30s'], ['idle_in_transaction_session_timeout', '5min']]))).toEqual([]);
  });

  it('plans one ALTER ROLE per timeout, says new sessions only, names the per-database settings that still win, and reads back', () => {
    const steps = setTimeoutSteps('app', ['statement_timeout'], {
      sessions: 3,
      own: new Map([['statement_timeout', '0']]),
      perDatabase: [{ database: 'reports', name: 'statement_timeout', value: '0' }],
    });
    expect(steps.map((step) => step.sql)).toEqual([`ALTER ROLE "app" SET statement_timeout = '60s'`, readBackSql('app')]);
    expect(steps[0]?.description).toContain('(now 0, that is disabled)');
    expect(steps[0]?.description).toContain('Applies to new sessions only: its 3 sessions connected now keep the old value until they reconnect.');
    expect(steps[0]?.description).toContain('ALTER ROLE … IN DATABASE still wins in reports (0).');
  });

  it('refuses what it must not touch, saying why', () => {
    const facts = { oid: 1, superuser: false, canLogin: true, inRecovery: false, mayAlter: true, sessions: 0, own: new Map<string, string>(), perDatabase: [] };
    expect(roleRefusal('app', facts, 'pgwarden')).toBeNull();
    expect(roleRefusal('app', undefined, 'pgwarden')).toBe('role app does not exist (no such row in pg_roles)');
    expect(roleRefusal('app', { ...facts, superuser: true }, 'pgwarden')).toContain('is a superuser');
    expect(roleRefusal('app', { ...facts, canLogin: false }, 'pgwarden')).toContain('NOLOGIN');
    expect(roleRefusal('app', { ...facts, inRecovery: true }, 'pgwarden')).toContain('standby');
    expect(roleRefusal('app', { ...facts, mayAlter: false }, 'pgwarden')).toContain('needs CREATEROLE');
    expect(roleRefusal('pgwarden', facts, 'pgwarden')).toContain("pgwarden's own role");
    expect(roleRefusal('app', { ...facts, own: new Map([['statement_timeout', '30s'], ['idle_in_transaction_session_timeout', '5min']]) }, 'pgwarden'))
      .toBe('app already has statement_timeout = 30s and idle_in_transaction_session_timeout = 5min of its own: nothing to set');
  });
});

describe('planning the fix without a server', () => {
  let dir: string;
  let audit: AuditLog;
  // Never connected: these plans must not touch the server.
  const node = new PgNode(resolveConnection('postgresql://alice@127.0.0.1:1/app', 'test'), { statementTimeoutMs: 1000, lockTimeoutMs: 1000 });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgwarden-timeouts-'));
    audit = new AuditLog({ path: join(dir, 'audit.log') });
  });

  afterAll(async () => {
    await node.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('read-only: refused, showing the SQL it would have run; a session\'s role is not even looked up', async () => {
    const context: ActionContext = { node, connection: node.spec, readOnly: true, audit };
    const byRole = await setRoleTimeouts.plan({ role: 'app' }, context);
    expect(byRole).toMatchObject({ action: 'role.setTimeouts', title: 'Set timeouts for role app', target: 'role app', danger: 'low', confirmToken: null, refused: 'read-only mode: pgwarden was started with --read-only' });
    expect(byRole.steps.map((step) => step.sql)).toEqual([alterRoleSql('app', 'statement_timeout', '60s'), alterRoleSql('app', 'idle_in_transaction_session_timeout', '10min'), readBackSql('app')]);
    const byPid = await setRoleTimeouts.plan({ pid: 4242 }, context);
    expect(byPid).toMatchObject({ target: 'pid 4242', steps: [], refused: 'read-only mode: pgwarden was started with --read-only' });
    expect((await audit.read()).map((line) => [line.action, line.outcome])).toEqual([['role.setTimeouts', 'refused'], ['role.setTimeouts', 'refused']]);
  });

  it('the console key: a timeouts alert of this cluster names the role; one of another cluster, or another check, does not', async () => {
    const desk = new ActionDesk({ node, connection: node.spec, readOnly: true, auditPath: join(dir, 'desk.log'), cluster: 'prod' });
    const alert = (cluster: string, checkId = 'timeouts', subject = 'role app'): Selection => ({
      kind: 'alert', rowKey: 'k', status: 'firing', acknowledged: false, silenceId: null,
      target: { key: `${cluster}/db1/${checkId}/${subject}`, cluster, node: 'db1', checkId, subject },
    });
    expect(await desk.plan('role.setTimeouts', alert('prod'), [])).toMatchObject({ title: 'Set timeouts for role app', target: 'role app', refused: 'read-only mode: pgwarden was started with --read-only' });
    const needs = 'this needs a selected session (Activity, Locks) or a selected timeouts alert (Alerts)';
    expect(await desk.plan('role.setTimeouts', alert('staging'), [])).toMatchObject({ target: '-', refused: needs });
    expect(await desk.plan('role.setTimeouts', alert('prod', 'lock-waits', 'pid 42'), [])).toMatchObject({ refused: needs });
    expect(await desk.plan('role.setTimeouts', { kind: 'session', pid: 42 }, [])).toMatchObject({ target: 'pid 42', refused: 'read-only mode: pgwarden was started with --read-only' });
    expect(await desk.plan('role.setTimeouts', { kind: 'table', schema: 'public', name: 't' }, [])).toMatchObject({ refused: needs });
  });

  it('refuses malformed input before asking the server', async () => {
    const context: ActionContext = { node, connection: node.spec, readOnly: false, audit };
    expect((await setRoleTimeouts.plan({ role: '' }, context)).refused).toBe('not a role name: ""');
    expect((await setRoleTimeouts.plan({ pid: -1 }, context)).refused).toBe('not a process id: -1');
  });
});

describe('reading timeouts', () => {
  it('reads durations as PostgreSQL does: a bare number is milliseconds, units us to d, rounded to ms', () => {
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('5min')).toBe(300_000);
    expect(parseDurationMs('300000')).toBe(300_000);
    expect(parseDurationMs('1.5s')).toBe(1500);
    expect(parseDurationMs('2h')).toBe(7_200_000);
    expect(parseDurationMs('1d')).toBe(86_400_000);
    expect(parseDurationMs('1500us')).toBe(2);
    expect(parseDurationMs("'10s'")).toBe(10_000);
    expect(parseDurationMs('0')).toBe(0);
    expect(parseDurationMs('10 s')).toBe(10_000);
    expect(parseDurationMs('ten seconds')).toBeNull();
    expect(parseDurationMs('-1')).toBeNull();
    expect(parseDurationMs('5 fortnights')).toBeNull();
  });

  it('reads PgBouncer SHOW CONFIG times as seconds', () => {
    expect(parseBouncerSeconds('0')).toBe(0);
    expect(parseBouncerSeconds('90')).toBe(90);
    expect(parseBouncerSeconds('0.5')).toBe(0.5);
    expect(parseBouncerSeconds('1500ms')).toBe(1.5);
    expect(parseBouncerSeconds(null)).toBeNull();
    expect(parseBouncerSeconds('forever')).toBeNull();
  });

  const defaults: ServerTimeout[] = [
    { name: 'statement_timeout', valueMs: 0, source: 'default' },
    { name: 'idle_in_transaction_session_timeout', valueMs: 3_600_000, source: 'configuration file' },
    { name: 'lock_timeout', valueMs: null, source: null },
  ];
  const setting = (role: string | null, database: string | null, valueMs: number): TimeoutSetting => ({ role, database, name: 'statement_timeout', value: `${valueMs}`, valueMs });

  it('resolves as the server does: role in database, role, database, all roles, then the server', () => {
    const all = [setting(null, null, 1), setting(null, 'db', 2), setting('app', null, 3), setting('app', 'db', 4)];
    expect(effectiveTimeout('app', 'db', 'statement_timeout', all, defaults)).toEqual({ valueMs: 4, source: 'role in database' });
    expect(effectiveTimeout('app', 'other', 'statement_timeout', all, defaults)).toEqual({ valueMs: 3, source: 'role' });
    expect(effectiveTimeout('bob', 'db', 'statement_timeout', all, defaults)).toEqual({ valueMs: 2, source: 'database' });
    expect(effectiveTimeout('bob', 'other', 'statement_timeout', all, defaults)).toEqual({ valueMs: 1, source: 'all roles' });
    expect(effectiveTimeout('bob', 'other', 'statement_timeout', [], defaults)).toEqual({ valueMs: 0, source: 'server' });
    expect(effectiveTimeout('bob', 'other', 'idle_in_transaction_session_timeout', all, defaults)).toEqual({ valueMs: 3_600_000, source: 'server' });
    expect(effectiveTimeout('bob', 'other', 'lock_timeout', all, defaults)).toEqual({ valueMs: null, source: 'server' });
  });

  it('groups a role\'s databases by value and source', () => {
    const groups = effectiveTimeouts('app', ['a', 'b', 'c'], [setting('app', 'b', 5000)], defaults);
    expect(groups.filter((g) => g.name === 'statement_timeout')).toEqual([
      { name: 'statement_timeout', valueMs: 0, source: 'server', databases: ['a', 'c'] },
      { name: 'statement_timeout', valueMs: 5000, source: 'role in database', databases: ['b'] },
    ]);
    expect(groups.filter((g) => g.name === 'lock_timeout')).toEqual([{ name: 'lock_timeout', valueMs: null, source: 'server', databases: ['a', 'b', 'c'] }]);
  });
});

describe('the timeouts check', () => {
  it('warns for a role with neither timeout, notes a missing lock_timeout as info, and gives the fix', () => {
    const findings = run(timeoutsCheck, okResults({ timeouts: timeoutsSnapshot }));
    expect(summary(findings)).toEqual([
      ['warning', 'role app', 'role app (12 sessions now): no statement_timeout in app; no idle_in_transaction_session_timeout in app; no lock_timeout in app'],
      ['info', 'role reports', 'role reports (1 session now): no lock_timeout in app'],
    ]);
    expect(findings[0]?.context.details?.['fix']).toBe(fixSql('app'));
    expect(findings[0]?.context.details?.['statement_timeout']).toBe('0 (disabled) from server in app');
    expect(findings[1]?.context.details?.['fix']).toBe(fixSql('reports', ['lock_timeout']));
    expect(findings[0]?.runbook).toBe('docs/alerts.md#timeouts');
  });

  it("with PgBouncer's query_timeout: a statement_timeout at or above it is a warning; below it is fine", () => {
    const findings = run(timeoutsCheck, okResults({ timeouts: timeoutsSnapshot, 'pgbouncer-config': pgbouncerConfigSnapshot }));
    const reports = findings.find((f) => f.subject === 'role reports');
    expect(reports?.severity).toBe('warning');
    expect(reports?.message).toBe("role reports (1 session now): statement_timeout 5m00s ≥ PgBouncer's query_timeout 1m30s in app (PgBouncer cuts the client first; the server query runs on); no lock_timeout in app");
    const app = findings.find((f) => f.subject === 'role app');
    expect(app?.message).toContain("PgBouncer's query_timeout 1m30s then cuts the client while the server query runs on");

    const below = withRole('reports', 60_000);
    expect(run(timeoutsCheck, okResults({ timeouts: below, 'pgbouncer-config': pgbouncerConfigSnapshot })).find((f) => f.subject === 'role reports')?.severity).toBe('info');
    // query_timeout 0 is PgBouncer's "never": nothing to compare with.
    const off = run(timeoutsCheck, okResults({ timeouts: timeoutsSnapshot, 'pgbouncer-config': { ...pgbouncerConfigSnapshot, queryTimeoutSeconds: 0 } }));
    expect(off.find((f) => f.subject === 'role reports')?.severity).toBe('info');
  });

  it('an ok finding when every judged role has both timeouts; superusers, replication roles and pgwarden itself are left out', () => {
    const allSet: TimeoutsSnapshot = {
      ...timeoutsSnapshot,
      roles: [
        withRole('reports', 60_000).roles[1]!,
        { ...timeoutsSnapshot.roles[0]!, name: 'postgres', superuser: true },
        { ...timeoutsSnapshot.roles[0]!, name: 'replicator', replication: true },
        { ...timeoutsSnapshot.roles[0]!, name: 'pgwarden', self: true },
      ],
    };
    expect(judgedRoles(allSet).map((role) => role.name)).toEqual(['reports']);
    const noLock = { ...allSet, roles: allSet.roles.map((role) => ({ ...role, effective: role.effective.map((e) => (e.name === 'lock_timeout' ? { ...e, valueMs: 10_000 } : e)) })) };
    expect(summary(run(timeoutsCheck, okResults({ timeouts: noLock })))).toEqual([
      ['ok', 'cluster', '1 login role has statement_timeout and idle_in_transaction_session_timeout in every database'],
    ]);
  });

  it('UNKNOWN, with the grant, when roles fall back on server-wide values pgwarden may not read; UNKNOWN when PgBouncer cannot be read', () => {
    const blind: TimeoutsSnapshot = {
      ...timeoutsSnapshot,
      serverDefaultsUnknown: 'GRANT EXECUTE ON FUNCTION pg_show_all_file_settings() TO <pgwarden\'s role>;',
      roles: [{ ...timeoutsSnapshot.roles[0]!, effective: timeoutsSnapshot.roles[0]!.effective.map((e) => ({ ...e, valueMs: null })) }],
    };
    const findings = run(timeoutsCheck, resultsWith({ timeouts: okResult(blind), 'pgbouncer-config': errorResult<PgBouncerConfigSnapshot>(undefined, 'connection refused') }));
    expect(summary(findings)).toEqual([
      ['unknown', 'pgbouncer query_timeout', "cannot evaluate: PgBouncer's settings could not be read (SHOW CONFIG): connection refused"],
      ['unknown', 'server-wide timeouts', "cannot evaluate: 1 role (app) takes a timeout from the server-wide value, which cannot be read: GRANT EXECUTE ON FUNCTION pg_show_all_file_settings() TO <pgwarden's role>;"],
    ]);
  });

  it('reports nothing on a standby: the same roles are judged on the primary', () => {
    expect(run(timeoutsCheck, okResults({ timeouts: { ...timeoutsSnapshot, inRecovery: true } }))).toEqual([]);
  });

  it('names the role in the subject so the console can fix it', () => {
    expect(roleSubject('Billing Team')).toBe('role Billing Team');
    expect(roleFromSubject('role Billing Team')).toBe('Billing Team');
    expect(roleFromSubject('cluster')).toBeUndefined();
    expect(roleFromSubject('role ')).toBeUndefined();
  });
});

/** The fixture with `role`'s statement_timeout set (at role level) to `ms`. */
function withRole(role: string, ms: number): TimeoutsSnapshot {
  return {
    ...timeoutsSnapshot,
    roles: timeoutsSnapshot.roles.map((r) => (r.name !== role ? r : { ...r, effective: r.effective.map((e) => (e.name === 'statement_timeout' ? { ...e, valueMs: ms, source: 'role' as const } : e)) })),
  };
}
