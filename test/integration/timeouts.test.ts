// Session timeouts per role on a private cluster (roles are cluster-wide: on the shared server
// other tests' roles would show up in every finding): roles with and without ALTER ROLE /
// ALTER DATABASE settings, the server-wide value from the configuration file, the one-key fix run
// for real, and a real PgBouncer whose query_timeout is below a role's statement_timeout.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, executePlan, planAction, type ActionContext, type ActionEvent } from '../../src/actions/index.js';
import { readBackSql } from '../../src/actions/set-role-timeouts.js';
import { timeoutsCheck } from '../../src/checks/timeouts.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import type { PgNode } from '../../src/db/node.js';
import { timeoutsProbe } from '../../src/probes/timeouts.js';
import { pgbouncerConfigProbe } from '../../src/probes/pgbouncer-config.js';
import { CheckWatch, findingFor, severities } from '../support/checks.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';
import { closeNodes, nodeFor, probeOnce } from '../support/probe.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

let cluster: TestCluster;
let auditDir: string;
let audit: AuditLog;
let bouncer: TestPgBouncer | undefined;
let node: PgNode;
let watch: CheckWatch | undefined;

function context(overrides: Partial<ActionContext> = {}): ActionContext {
  return { node, connection: resolveConnection(cluster.dsn(), 'test'), readOnly: false, audit, ...overrides };
}

/** What a new session of `role` gets for `setting`. */
async function newSessionShows(role: string, setting: string, database = 'postgres'): Promise<string> {
  const client = await openSession(cluster.dsn(database, role), `timeouts-${role}`);
  try {
    const result = await client.query<Record<string, string>>(`show ${setting}`);
    return result.rows[0]?.[setting] ?? '';
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  cluster = await createPrimary({ name: 'timeouts' });
  // bare: nothing set. set: all three at role level. partial: statement_timeout only in postgres,
  // idle_in_transaction only in appdb (ALTER DATABASE). Only partial may connect to appdb.
  // grouped is NOLOGIN (not listed), admin a superuser (not judged).
  await cluster.sql(`
    create role t_bare login;
    create role t_set login;
    alter role t_set set statement_timeout = '30s';
    alter role t_set set idle_in_transaction_session_timeout = '5min';
    alter role t_set set lock_timeout = '5s';
    create role t_partial login;
    alter role t_partial in database postgres set statement_timeout = '20s';
    create role t_grouped nologin;
    create role t_admin login superuser;
    create role "T ""odd"" role" login`);
  // CREATE DATABASE cannot share the implicit transaction of a multi-statement query.
  await cluster.sql('create database appdb');
  await cluster.sql(`
    revoke connect on database appdb from public;
    grant connect on database appdb to t_partial;
    alter database appdb set idle_in_transaction_session_timeout = '1min'`);
  watch = new CheckWatch(cluster.dsn(), [timeoutsCheck]);
  node = nodeFor(cluster.dsn());
  auditDir = await mkdtemp(join(tmpdir(), 'pgwarden-timeouts-'));
  audit = new AuditLog({ path: join(auditDir, 'audit.log') });
});

afterAll(async () => {
  await closeAll();
  await watch?.close();
  await closeNodes();
  await bouncer?.stop();
  await destroyAll();
  await rm(auditDir, { recursive: true, force: true });
});

describe('the timeouts probe', () => {
  it('resolves every login role in every database it may connect to, with the source of each value', async () => {
    const snapshot = await probeOnce(timeoutsProbe, cluster.dsn());
    // pgwarden's own session says "client"; the server-wide values come from the files, or the built-in default.
    expect(snapshot.serverDefaultsUnknown).toBeNull();
    expect(snapshot.serverDefaults).toEqual([
      { name: 'statement_timeout', valueMs: 0, source: 'default' },
      { name: 'idle_in_transaction_session_timeout', valueMs: 0, source: 'default' },
      { name: 'lock_timeout', valueMs: 0, source: 'default' },
    ]);
    expect(snapshot.databases).toEqual(['appdb', 'postgres']);
    expect(snapshot.roles.map((role) => role.name)).toEqual(['T "odd" role', 'postgres', 't_admin', 't_bare', 't_partial', 't_set']);
    const partial = snapshot.roles.find((role) => role.name === 't_partial');
    expect(partial?.databases).toEqual(['appdb', 'postgres']);
    expect(partial?.effective).toEqual([
      { name: 'statement_timeout', valueMs: 0, source: 'server', databases: ['appdb'] },
      { name: 'statement_timeout', valueMs: 20_000, source: 'role in database', databases: ['postgres'] },
      { name: 'idle_in_transaction_session_timeout', valueMs: 60_000, source: 'database', databases: ['appdb'] },
      { name: 'idle_in_transaction_session_timeout', valueMs: 0, source: 'server', databases: ['postgres'] },
      { name: 'lock_timeout', valueMs: 0, source: 'server', databases: ['appdb', 'postgres'] },
    ]);
    // No CONNECT on appdb: only postgres counts for the others.
    expect(snapshot.roles.find((role) => role.name === 't_bare')?.databases).toEqual(['postgres']);
    expect(snapshot.roles.find((role) => role.name === 'postgres')).toMatchObject({ superuser: true, self: true });
    expect(snapshot.settings).toContainEqual({ role: null, database: 'appdb', name: 'idle_in_transaction_session_timeout', value: '1min', valueMs: 60_000 });
    expect(snapshot.settings).toContainEqual({ role: 't_set', database: null, name: 'statement_timeout', value: '30s', valueMs: 30_000 });
  });

  it('reads a server-wide value from the configuration file (ALTER SYSTEM) although pgwarden\'s session overrides it', async () => {
    await cluster.sql(`alter system set lock_timeout = '3s'`);
    await cluster.sql('select pg_reload_conf()');
    try {
      const snapshot = await probeOnce(timeoutsProbe, cluster.dsn());
      expect(snapshot.serverDefaults.find((d) => d.name === 'lock_timeout')).toEqual({ name: 'lock_timeout', valueMs: 3000, source: 'configuration file' });
      expect(snapshot.roles.find((role) => role.name === 't_bare')?.effective.find((e) => e.name === 'lock_timeout')).toEqual({ name: 'lock_timeout', valueMs: 3000, source: 'server', databases: ['postgres'] });
      // The server agrees: a new session of the role gets it (once the postmaster has reloaded).
      await waitFor('a new session to get lock_timeout 3s', async () => (await newSessionShows('t_bare', 'lock_timeout')) === '3s');
    } finally {
      await cluster.sql('alter system reset lock_timeout');
      await cluster.sql('select pg_reload_conf()');
    }
  });
});

describe('the timeouts check', () => {
  it('warns for roles without statement_timeout or idle_in_transaction_session_timeout, per database; info for lock_timeout only', async () => {
    const findings = await watch!.evaluate(timeoutsCheck);
    expect(severities(findings)).toEqual([
      ['warning', 'role T "odd" role'],
      ['warning', 'role t_bare'],
      ['warning', 'role t_partial'],
    ]);
    expect(findingFor(findings, 'role t_bare').message).toBe('role t_bare (no session now): no statement_timeout in postgres; no idle_in_transaction_session_timeout in postgres; no lock_timeout in postgres');
    expect(findingFor(findings, 'role t_partial').message).toBe('role t_partial (no session now): no statement_timeout in appdb; no idle_in_transaction_session_timeout in postgres; no lock_timeout in every database');
    expect(findingFor(findings, 'role T "odd" role').context.details?.['fix']).toBe(`ALTER ROLE "T ""odd"" role" SET statement_timeout = '60s'; ALTER ROLE "T ""odd"" role" SET idle_in_transaction_session_timeout = '10min';`);
  });
});

describe('the set-timeouts action', () => {
  it('plans the exact SQL, runs it, and only new sessions of the role get the settings', async () => {
    const before = await openSession(cluster.dsn('postgres', 't_bare'), 'timeouts-before');
    const plan = await planAction('role.setTimeouts', { role: 't_bare' }, context());
    expect(plan).toMatchObject({ title: 'Set timeouts for role t_bare', target: 'role t_bare (1 session now)', danger: 'low', confirmToken: null, refused: null });
    expect(plan.steps.map((step) => step.sql)).toEqual([
      `ALTER ROLE "t_bare" SET statement_timeout = '60s'`,
      `ALTER ROLE "t_bare" SET idle_in_transaction_session_timeout = '10min'`,
      readBackSql('t_bare'),
    ]);
    expect(plan.steps[0]?.description).toContain('Applies to new sessions only: its 1 session connected now keeps the old value until it reconnects.');

    const events: ActionEvent[] = [];
    const outcome = await executePlan(plan, context(), (event) => events.push(event));
    expect(outcome).toMatchObject({ status: 'ok', ok: true });
    expect(outcome.summary).toBe('role t_bare now has statement_timeout=60s, idle_in_transaction_session_timeout=10min for its new sessions; sessions connected now keep their old values');
    expect(outcome.sql).toEqual(plan.steps.map((step) => step.sql));
    expect(events.at(-1)).toEqual({ kind: 'done', ok: true, summary: outcome.summary });

    const rows = await cluster.sql(`select setconfig from pg_db_role_setting where setdatabase = 0 and setrole = 't_bare'::regrole`);
    expect(rows).toEqual([{ setconfig: ['statement_timeout=60s', 'idle_in_transaction_session_timeout=10min'] }]);
    expect(await newSessionShows('t_bare', 'statement_timeout')).toBe('1min');
    expect(await newSessionShows('t_bare', 'idle_in_transaction_session_timeout')).toBe('10min');
    // The session that was already connected keeps what it had.
    expect((await before.query<{ statement_timeout: string }>('show statement_timeout')).rows[0]?.statement_timeout).toBe('0');

    // The check sees it: t_bare is left with the lock_timeout note only.
    const findings = await watch!.evaluate(timeoutsCheck);
    expect(findingFor(findings, 'role t_bare')).toMatchObject({ severity: 'info', message: 'role t_bare (1 session now): no lock_timeout in postgres' });
    const entries = await audit.read();
    expect(entries.at(-1)).toMatchObject({ action: 'role.setTimeouts', plan_target: 'role t_bare (1 session now)', outcome: 'ok' });
  });

  it('from a session row: plans for its role, sets only what is missing, and says which per-database settings still win', async () => {
    const session = await openSession(cluster.dsn('postgres', 't_partial'), 'timeouts-partial');
    const pid = await backendPid(session);
    const plan = await planAction('role.setTimeouts', { pid }, context());
    expect(plan.refused).toBeNull();
    expect(plan.basis).toMatchObject({ role: 't_partial' });
    expect(plan.steps.map((step) => step.sql)).toEqual([
      `ALTER ROLE "t_partial" SET statement_timeout = '60s'`,
      `ALTER ROLE "t_partial" SET idle_in_transaction_session_timeout = '10min'`,
      readBackSql('t_partial'),
    ]);
    expect(plan.steps[0]?.description).toContain('ALTER ROLE … IN DATABASE still wins in postgres (20s).');

    // A role with a value of its own keeps it: only the missing one is planned.
    await cluster.sql(`alter role t_partial set idle_in_transaction_session_timeout = '2min'`);
    const again = await planAction('role.setTimeouts', { role: 't_partial' }, context());
    expect(again.steps.map((step) => step.sql)).toEqual([`ALTER ROLE "t_partial" SET statement_timeout = '60s'`, readBackSql('t_partial')]);
    await cluster.sql(`alter role t_partial reset idle_in_transaction_session_timeout`);
  });

  it('quotes an awkward role name and the server accepts it', async () => {
    const plan = await planAction('role.setTimeouts', { role: 'T "odd" role' }, context());
    expect(plan.steps[0]?.sql).toBe(`ALTER ROLE "T ""odd"" role" SET statement_timeout = '60s'`);
    const outcome = await executePlan(plan, context(), () => undefined);
    expect(outcome.status).toBe('ok');
    expect(await newSessionShows('T "odd" role', 'statement_timeout')).toBe('1min');
  });

  it('refuses superusers, NOLOGIN roles, unknown roles, roles already set, and read-only mode; nothing runs', async () => {
    const refusals = await Promise.all([
      planAction('role.setTimeouts', { role: 't_admin' }, context()),
      planAction('role.setTimeouts', { role: 't_grouped' }, context()),
      planAction('role.setTimeouts', { role: 'nobody_here' }, context()),
      planAction('role.setTimeouts', { role: 't_set' }, context()),
      planAction('role.setTimeouts', { role: 't_bare' }, context({ readOnly: true })),
    ]);
    expect(refusals.map((plan) => plan.refused)).toEqual([
      expect.stringContaining('t_admin is a superuser'),
      expect.stringContaining('t_grouped cannot log in (NOLOGIN)'),
      'role nobody_here does not exist (no such row in pg_roles)',
      't_set already has statement_timeout = 30s and idle_in_transaction_session_timeout = 5min of its own: nothing to set',
      'read-only mode: pgwarden was started with --read-only',
    ]);
    const outcome = await executePlan(refusals[0], context(), () => undefined);
    expect(outcome).toMatchObject({ status: 'refused', sql: [] });
    expect((await cluster.sql(`select count(*)::int as n from pg_db_role_setting where setrole = 't_admin'::regrole`))[0]).toEqual({ n: 0 });
  });
});

describe('with PgBouncer in front', () => {
  it('a statement_timeout at or above query_timeout is a warning; lowering it clears the finding', async () => {
    bouncer = await startPgBouncer({ backendHost: cluster.host, backendPort: cluster.port });
    const consoleClient = await openSession(bouncer.adminDsn, 'timeouts-admin');
    // The admin console changes a running PgBouncer's settings with SET.
    await consoleClient.query('SET query_timeout = 20');
    const settings = await probeOnce(pgbouncerConfigProbe, cluster.dsn(), { pgbouncerDsn: bouncer.adminDsn });
    expect(settings).toMatchObject({ queryTimeoutSeconds: 20, poolMode: 'session' });

    const bounced = new CheckWatch(cluster.dsn(), [timeoutsCheck], { pgbouncerDsn: bouncer.adminDsn });
    try {
      const findings = await bounced.evaluate(timeoutsCheck);
      expect(findingFor(findings, 'role t_set')).toMatchObject({
        severity: 'warning',
        message: "role t_set (no session now): statement_timeout 30s ≥ PgBouncer's query_timeout 20s in postgres (PgBouncer cuts the client first; the server query runs on)",
      });
      expect(findingFor(findings, 'role t_set').context.details).toMatchObject({ pgbouncerQueryTimeoutSeconds: 20, fix: `ALTER ROLE "t_set" SET statement_timeout = '16s';` });

      await cluster.sql(`alter role t_set set statement_timeout = '15s'`);
      const after = await bounced.evaluate(timeoutsCheck);
      expect(after.some((f) => f.subject === 'role t_set')).toBe(false);
    } finally {
      await bounced.close();
    }
  });
});
