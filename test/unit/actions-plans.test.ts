import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { analyzeSteps } from '../../src/actions/analyze-table.js';
import { AuditLog } from '../../src/actions/audit.js';
import { cancelSteps } from '../../src/actions/cancel-backend.js';
import { actionIds, actions, cancelBackend, isActionId, reindexInvalidIndex, terminateBackend, terminateBackends, vacuumTable, analyzeTable } from '../../src/actions/index.js';
import { parseProgress, progressSql } from '../../src/actions/progress.js';
import { reindexSteps, validitySql } from '../../src/actions/reindex-invalid-index.js';
import type { IndexFacts, TableFacts } from '../../src/actions/relations.js';
import { indexRefusal, tableRefusal } from '../../src/actions/relations.js';
import type { SessionFacts } from '../../src/actions/sessions.js';
import { describeSession, identityRefusal, sessionRefusal } from '../../src/actions/sessions.js';
import { terminateStep, waitStep } from '../../src/actions/terminate-backend.js';
import { terminateManySteps } from '../../src/actions/terminate-backends.js';
import type { ActionContext } from '../../src/actions/types.js';
import { vacuumSteps } from '../../src/actions/vacuum-table.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { PgNode } from '../../src/db/node.js';
import { commands } from '../../src/keymap.js';

function sqlOf(steps: readonly { sql?: string }[]): (string | undefined)[] {
  return steps.map((step) => step.sql);
}

describe('plan steps', () => {
  it('cancel: one statement, with a warning when the session has no query to cancel', () => {
    expect(sqlOf(cancelSteps(4242))).toEqual(['SELECT pg_cancel_backend(4242)']);
    expect(cancelSteps(4242, 'active')[0]?.description).toBe('Cancel the query running in pid 4242: it fails with query_canceled (57014); the session stays connected.');
    expect(cancelSteps(4242, 'idle in transaction')[0]?.description).toMatch(/It is idle in transaction, with no query to cancel: this will not end its transaction nor release its locks/);
    expect(() => cancelSteps(-1)).toThrow('not a process id: -1');
  });

  it('terminate: the signal, then a bounded wait for the pid to go', () => {
    expect(terminateStep(4242, 'pid 4242 (bob@app, psql)')).toEqual({
      description: 'Terminate pid 4242 (bob@app, psql): its transaction is rolled back, its locks released and its connection closed.',
      sql: 'SELECT pg_terminate_backend(4242)',
    });
    expect(waitStep([4242])).toEqual({
      description: 'Wait until pid 4242 has left pg_stat_activity (checked every 100 ms, for at most 10 s).',
      sql: 'SELECT pid FROM pg_stat_activity WHERE pid = 4242',
    });
    expect(sqlOf(terminateManySteps([1, 22, 333]))).toEqual([
      'SELECT pg_terminate_backend(1)',
      'SELECT pg_terminate_backend(22)',
      'SELECT pg_terminate_backend(333)',
      'SELECT pid FROM pg_stat_activity WHERE pid IN (1, 22, 333)',
    ]);
  });

  it('VACUUM and ANALYZE: no statement timeout, a 5 s lock timeout, then the quoted statement', () => {
    expect(sqlOf(vacuumSteps('Sales "EU"', 'order; drop table x'))).toEqual([
      'SET statement_timeout = 0',
      "SET lock_timeout = '5s'",
      'VACUUM (ANALYZE) "Sales ""EU"""."order; drop table x"',
    ]);
    expect(vacuumSteps('public', 't')[1]?.description).toMatch(/within 5s .*ACCESS EXCLUSIVE/);
    expect(sqlOf(analyzeSteps('public', 'Orders'))).toEqual(['SET statement_timeout = 0', "SET lock_timeout = '5s'", 'ANALYZE "public"."Orders"']);
    expect(vacuumSteps('public', 't').some((step) => /FULL/.test(step.sql ?? ''))).toBe(false);
  });

  it('REINDEX: no lock timeout (a half-done rebuild leaves debris), then the check by name', () => {
    expect(sqlOf(reindexSteps('public', "it's"))).toEqual([
      'SET statement_timeout = 0',
      'SET lock_timeout = 0',
      'REINDEX INDEX CONCURRENTLY "public"."it\'s"',
      "SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = 'it''s'",
    ]);
    expect(reindexSteps('public', 'i', true)[2]?.description).toMatch(/unique: it fails again if duplicate keys remain/);
    expect(validitySql('a\\b', 'i')).toContain("n.nspname = E'a\\\\b'");
  });
});

describe('progress', () => {
  it('selects the views the server has', () => {
    expect(progressSql('vacuum', 150000)).toMatch(/pg_stat_progress_vacuum[\s\S]*union all[\s\S]*pg_stat_progress_analyze/);
    expect(progressSql('vacuum', 120000)).not.toMatch(/pg_stat_progress_analyze/);
    expect(progressSql('vacuum', 90500)).toBeNull();
    expect(progressSql('analyze', 120000)).toBeNull();
    expect(progressSql('index', 110000)).toBeNull();
    expect(progressSql('index', 150000)).toMatch(/pg_stat_progress_create_index/);
  });

  it('turns a row into a fraction and a message', () => {
    expect(parseProgress({ phase: 'scanning heap', done: '1234', total: '2700', unit: 'blocks', locker: null }, 3.2)).toEqual({
      fraction: 1234 / 2700,
      phase: 'scanning heap',
      message: 'scanning heap, 46% (1,234 of 2,700 blocks), 3.2s',
    });
    expect(parseProgress({ phase: 'initializing', done: '0', total: '0', unit: 'blocks', locker: null })).toEqual({ fraction: null, phase: 'initializing', message: 'initializing' });
    expect(parseProgress({ phase: 'waiting for old snapshots', done: 0, total: 2, unit: 'transactions', locker: 777 })).toMatchObject({
      fraction: 0,
      message: 'waiting for old snapshots, 0% (0 of 2 transactions), waiting for pid 777',
    });
    // A total that moved under a finished count never shows more than 100 %.
    expect(parseProgress({ phase: 'vacuuming heap', done: 12, total: 10, unit: 'blocks', locker: null }).fraction).toBe(1);
  });
});

function session(overrides: Partial<SessionFacts> = {}): SessionFacts {
  return { pid: 4242, startedUs: '1700000000000000', user: 'bob', database: 'app', application: 'psql', backendType: 'client backend', state: 'active', self: false, denied: null, ...overrides };
}

describe('session checks', () => {
  it('describes a session as "pid (user@database, application)"', () => {
    expect(describeSession(4242, session())).toBe('pid 4242 (bob@app, psql)');
    expect(describeSession(4242, session({ application: '' }))).toBe('pid 4242 (bob@app)');
    expect(describeSession(77, session({ pid: 77, user: null, database: null, application: '', backendType: 'autovacuum worker' }))).toBe('pid 77 (autovacuum worker)');
    expect(describeSession(9, undefined)).toBe('pid 9');
  });

  it("refuses pgwarden's own sessions, ended ones, server processes and what the role may not signal", () => {
    expect(sessionRefusal(4242, session(), 'dba')).toBeNull();
    expect(sessionRefusal(4242, undefined, 'dba')).toBe('pid 4242: the session has ended (no such backend in pg_stat_activity)');
    expect(sessionRefusal(4242, session({ application: 'pgwarden' }), 'dba')).toBe("pid 4242 is pgwarden's own session (pgwarden): pgwarden never signals itself");
    expect(sessionRefusal(4242, session({ application: 'pgwarden-action' }), 'dba')).toMatch(/pgwarden's own session/);
    expect(sessionRefusal(4242, session({ self: true }), 'dba')).toMatch(/pgwarden's own session/);
    expect(sessionRefusal(4242, session({ backendType: 'checkpointer', user: null }), 'dba')).toBe('pid 4242 is the checkpointer, a server process, not a session');
    expect(sessionRefusal(4242, session({ denied: 'superuser', user: 'postgres' }), 'dba')).toBe('pid 4242 belongs to the superuser postgres: only a superuser may signal it, and dba is not one');
    expect(sessionRefusal(4242, session({ denied: 'privilege' }), 'dba')).toBe('dba may not signal pid 4242: it needs to be a member of bob or of pg_signal_backend');
  });

  it('tells a reused pid from the session that was planned', () => {
    expect(identityRefusal({ pid: 4242, startedUs: '1700000000000000' }, session(), 'dba')).toBeNull();
    expect(identityRefusal({ pid: 4242, startedUs: '1600000000000000' }, session(), 'dba')).toBe('pid 4242: the session has ended, and the pid now belongs to another session: nothing was signalled');
  });
});

function table(overrides: Partial<TableFacts> = {}): TableFacts {
  return { oid: 1, schema: 'public', name: 't', kind: 'r', persistence: 'p', inRecovery: false, allowed: true, owner: 'app', deadTuples: 0, ...overrides };
}

function index(overrides: Partial<IndexFacts> = {}): IndexFacts {
  return {
    oid: 2, schema: 'public', name: 'i', table: 't', kind: 'i', persistence: 'p', valid: false, live: true, unique: true, definition: '', inRecovery: false, allowed: true, owner: 'app', build: null,
    ...overrides,
  };
}

describe('relation checks', () => {
  it('refuses VACUUM and ANALYZE where they would fail or silently skip', () => {
    expect(tableRefusal('VACUUM', 'public', 't', table(), 'dba')).toBeNull();
    expect(tableRefusal('VACUUM', 'public', 't', table({ kind: 'm' }), 'dba')).toBeNull();
    expect(tableRefusal('ANALYZE', 'public', 't', table({ kind: 'f' }), 'dba')).toBeNull();
    expect(tableRefusal('VACUUM', 'public', 't', table({ kind: 'f' }), 'dba')).toBe('public.t is a foreign table: VACUUM works on tables and materialized views');
    expect(tableRefusal('VACUUM', 'public', 't', undefined, 'dba')).toBe('public.t does not exist (it may have been dropped or renamed)');
    expect(tableRefusal('ANALYZE', 'public', 't', table({ inRecovery: true }), 'dba')).toBe('the node is a standby (in recovery): ANALYZE runs on the primary only');
    expect(tableRefusal('VACUUM', 'pg_temp_3', 't', table({ persistence: 't' }), 'dba')).toBe('pg_temp_3.t is a temporary table of another session: only that session can VACUUM it');
    expect(tableRefusal('ANALYZE', 'public', 't', table({ allowed: false }), 'dba')).toMatch(/^dba may not ANALYZE public.t \(owned by app\)/);
  });

  it('refuses REINDEX of anything but a finished, invalid index it can rebuild', () => {
    expect(indexRefusal('public', 'i', index(), 'dba', 150000)).toBeNull();
    expect(indexRefusal('public', 'i', index({ valid: true }), 'dba', 150000)).toBe('public.i is not an invalid index: it is valid, nothing to repair');
    expect(indexRefusal('public', 'i', index({ build: { pid: 55, command: 'CREATE INDEX CONCURRENTLY', phase: 'building index' } }), 'dba', 150000)).toBe(
      'a build is still in progress on public.t (CREATE INDEX CONCURRENTLY by pid 55, phase "building index"): wait for it to finish or fail',
    );
    expect(indexRefusal('public', 'i', undefined, 'dba', 150000)).toBe('there is no index public.i (it may have been dropped or renamed)');
    expect(indexRefusal('public', 'i', index(), 'dba', 110000)).toBe('REINDEX CONCURRENTLY needs PostgreSQL 12 or later');
    expect(indexRefusal('public', 'i', index({ live: false }), 'dba', 150000)).toMatch(/being dropped/);
    expect(indexRefusal('pg_toast', 'i', index({ schema: 'pg_toast' }), 'dba', 150000)).toMatch(/system index/);
    expect(indexRefusal('public', 'i_ccnew', index({ name: 'i_ccnew' }), 'dba', 150000)).toMatch(/half-built copy .*: drop it/);
    expect(indexRefusal('public', 'i_ccold2', index({ name: 'i_ccold2' }), 'dba', 150000)).toMatch(/old index left by a REINDEX CONCURRENTLY/);
    expect(indexRefusal('public', 'i', index({ kind: 'I' }), 'dba', 150000)).toMatch(/partitioned index/);
    expect(indexRefusal('public', 'i', index({ allowed: false }), 'dba', 150000)).toBe('dba may not REINDEX public.i (owned by app): only its owner or a superuser may');
  });
});

describe('the registry', () => {
  it('keys every action by the dangerous keymap command that starts it', () => {
    expect(actionIds).toEqual(['session.cancel', 'session.terminate', 'session.terminateTagged', 'table.vacuum', 'table.analyze', 'index.reindex', 'role.setTimeouts']);
    for (const id of actionIds) expect(commands.find((command) => command.id === id)?.dangerous).toBe(true);
    for (const id of actionIds) expect(actions[id].id).toBe(id);
    expect(isActionId('session.cancel')).toBe(true);
    expect(isActionId('quit')).toBe(false);
  });
});

describe('plans in read-only mode', () => {
  let dir: string;
  let audit: AuditLog;
  // Never connected: read-only plans must not touch the server.
  const node = new PgNode(resolveConnection('postgresql://alice@127.0.0.1:1/app', 'test'), { statementTimeoutMs: 1000, lockTimeoutMs: 1000 });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgwarden-plans-'));
    audit = new AuditLog({ path: join(dir, 'audit.log') });
  });

  afterAll(async () => {
    await node.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses every action, shows what it would have run, with the danger and the token, and audits each refusal', async () => {
    const context: ActionContext = { node, connection: node.spec, readOnly: true, audit };
    const plans = [
      await cancelBackend.plan({ pid: 4242 }, context),
      await terminateBackend.plan({ pid: 4242 }, context),
      await terminateBackends.plan({ pids: [1, 2, 2] }, context),
      await vacuumTable.plan({ schema: 'public', table: 'orders', analyze: true }, context),
      await analyzeTable.plan({ schema: 'public', table: 'orders' }, context),
      await reindexInvalidIndex.plan({ schema: 'public', index: 'orders_key' }, context),
    ];
    expect(plans.map((plan) => [plan.action, plan.danger, plan.confirmToken, plan.refused])).toEqual([
      ['session.cancel', 'low', null, 'read-only mode: pgwarden was started with --read-only'],
      ['session.terminate', 'medium', null, 'read-only mode: pgwarden was started with --read-only'],
      ['session.terminateTagged', 'high', '2', 'read-only mode: pgwarden was started with --read-only'],
      ['table.vacuum', 'medium', null, 'read-only mode: pgwarden was started with --read-only'],
      ['table.analyze', 'low', null, 'read-only mode: pgwarden was started with --read-only'],
      ['index.reindex', 'high', 'orders_key', 'read-only mode: pgwarden was started with --read-only'],
    ]);
    expect(plans.map((plan) => plan.steps.at(-1)?.sql)).toEqual([
      'SELECT pg_cancel_backend(4242)',
      'SELECT pid FROM pg_stat_activity WHERE pid = 4242',
      'SELECT pid FROM pg_stat_activity WHERE pid IN (1, 2)',
      'VACUUM (ANALYZE) "public"."orders"',
      'ANALYZE "public"."orders"',
      validitySql('public', 'orders_key'),
    ]);
    expect(new Set(plans.map((plan) => plan.id)).size).toBe(plans.length);
    const lines = await audit.read();
    expect(lines.map((line) => [line.action, line.outcome, line.plan_id])).toEqual(plans.map((plan) => [plan.action, 'refused', plan.id]));
    expect(lines[3]?.sql).toEqual(['SET statement_timeout = 0', "SET lock_timeout = '5s'", 'VACUUM (ANALYZE) "public"."orders"']);

    // A refused plan executes to nothing: no connection, one done event.
    const events: unknown[] = [];
    const outcome = await vacuumTable.execute(plans[3] as Awaited<ReturnType<typeof vacuumTable.plan>>, context, (event) => events.push(event));
    expect(outcome).toMatchObject({ status: 'refused', ok: false, sql: [] });
    expect(events).toEqual([{ kind: 'done', ok: false, summary: 'read-only mode: pgwarden was started with --read-only' }]);
    expect(await audit.read()).toHaveLength(plans.length);
  });

  it('refuses malformed input before asking the server', async () => {
    const context: ActionContext = { node, connection: node.spec, readOnly: false, audit };
    expect((await cancelBackend.plan({ pid: 0 }, context)).refused).toBe('not a process id: 0');
    expect((await terminateBackend.plan({ pid: Number.NaN }, context)).refused).toBe('not a process id: NaN');
    expect((await terminateBackends.plan({ pids: [] }, context)).refused).toBe('no sessions are tagged');
    expect((await terminateBackends.plan({ pids: [3, -3] }, context)).refused).toBe('not a process id: -3');
  });
});
