import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { resolveConnection } from '../../src/config/conninfo.js';
import type { ConnectionSpec } from '../../src/config/types.js';
import type { PgNode } from '../../src/db/node.js';
import {
  AuditLog,
  analyzeTable,
  cancelBackend,
  executePlan,
  planAction,
  recordCancelled,
  reindexInvalidIndex,
  terminateBackend,
  terminateBackends,
  vacuumTable,
} from '../../src/actions/index.js';
import type { ActionContext, ActionEvent, AuditEntry } from '../../src/actions/index.js';
import { waitFor } from '../support/cluster.js';
import { closeNodes, nodeFor } from '../support/probe.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

const baseDsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
// A database of its own: VACUUM's horizon and REINDEX CONCURRENTLY's waits only see transactions in
// the same database, so other test files' open transactions cannot hold these tests up.
const database = `pgw_actions_${suffix}`;
const role = `pgw_act_${suffix}`;
const app = `pgw-act-${suffix}`;
const secret = `pgw-secret-${suffix}`;

function dsnFor(db: string, user = 'postgres'): string {
  const url = new URL(baseDsn);
  url.pathname = `/${db}`;
  url.username = user;
  return url.toString();
}
const dsn = dsnFor(database);

let bootstrap: pg.Client;
let admin: pg.Client;
let node: PgNode;
let auditDir: string;
let audit: AuditLog;
// The password is never needed (trust auth) but must never reach the audit log either.
let connection: ConnectionSpec;
let roleConnection: ConnectionSpec;

function context(overrides: Partial<ActionContext> = {}): ActionContext {
  return { node, connection, readOnly: false, audit, ...overrides };
}

async function session(name: string, appName = `${app}-${name}`): Promise<{ client: pg.Client; pid: number }> {
  const client = await openSession(dsn, appName);
  return { client, pid: await backendPid(client) };
}

/** A statement expected to block: its outcome is 'done' or the SQLSTATE it failed with. */
function pending(client: pg.Client, sql: string): Promise<string> {
  return client.query(sql).then(
    () => 'done',
    (error: unknown) => String((error as { code?: unknown }).code ?? (error instanceof Error ? error.message : error)),
  );
}

async function alive(pid: number): Promise<boolean> {
  const result = await admin.query('select 1 from pg_stat_activity where pid = $1', [pid]);
  return result.rowCount === 1;
}

async function waitingOnLock(pid: number): Promise<boolean> {
  const result = await admin.query<{ w: string | null }>('select wait_event_type as w from pg_stat_activity where pid = $1', [pid]);
  return result.rows[0]?.w === 'Lock';
}

async function auditCount(): Promise<number> {
  return (await audit.read()).length;
}

/** The audit entries appended since `before` lines. */
async function auditSince(before: number): Promise<AuditEntry[]> {
  return (await audit.read()).slice(before);
}

function recorder(): { events: ActionEvent[]; listener: (event: ActionEvent) => void } {
  const events: ActionEvent[] = [];
  return { events, listener: (event) => events.push(event) };
}

/** "started 0", "finished 0", "progress", "done ok"… for comparing event sequences. */
function outline(events: readonly ActionEvent[]): string[] {
  return events
    .filter((event) => event.kind !== 'progress')
    .map((event) => (event.kind === 'step' ? `${event.status} ${event.index}` : `done ${event.ok ? 'ok' : 'failed'}`));
}

async function tableStats(table: string): Promise<{ dead: number; lastVacuum: Date | null; lastAnalyze: Date | null }> {
  const rows = await node.query({ text: 'select n_dead_tup, last_vacuum, last_analyze from pg_stat_user_tables where relname = $1', values: [table] });
  const row = rows[0];
  if (row === undefined) throw new Error(`no statistics for ${table}`);
  return { dead: Number(row['n_dead_tup']), lastVacuum: row['last_vacuum'] as Date | null, lastAnalyze: row['last_analyze'] as Date | null };
}

async function indexValid(name: string): Promise<boolean | undefined> {
  const result = await admin.query<{ v: boolean }>('select x.indisvalid as v from pg_index x join pg_class c on c.oid = x.indexrelid where c.relname = $1', [name]);
  return result.rows[0]?.v;
}

beforeAll(async () => {
  bootstrap = await openSession(baseDsn, `${app}-bootstrap`);
  await bootstrap.query(`create database ${database}`);
  await bootstrap.query(`create role ${role} login`);
  // Cost-based delay on the action session (through its role, so no knob in pgwarden itself) makes
  // the VACUUM last long enough for the 500 ms poller to catch it in a phase.
  await bootstrap.query(`alter role ${role} set vacuum_cost_delay = '2ms'`);
  await bootstrap.query(`alter role ${role} set vacuum_cost_limit = 10`);
  admin = await openSession(dsn, `${app}-admin`);
  await admin.query('create table lockme (id int primary key, v int); insert into lockme values (1, 1), (2, 2)');
  node = nodeFor(dsn);
  connection = { ...resolveConnection(dsn, 'test'), password: secret };
  roleConnection = { ...resolveConnection(dsnFor(database, role), 'test'), password: secret };
  auditDir = await mkdtemp(join(tmpdir(), 'pgwarden-audit-'));
  audit = new AuditLog({ path: join(auditDir, 'state', 'audit.log') });
});

// A failed test must not leave its sessions (and their locks) behind for the next one.
afterEach(async () => {
  await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid() and application_name not like $2', [database, 'pgwarden%']);
});

afterAll(async () => {
  await closeAll();
  await closeNodes();
  const cleanup = await openSession(baseDsn, `${app}-cleanup`);
  await cleanup.query(`drop database if exists ${database} with (force)`);
  await cleanup.query(`drop role if exists ${role}`);
  await closeAll();
  if (auditDir !== undefined) await rm(auditDir, { recursive: true, force: true });
});

describe('cancel and terminate on a real lock chain', () => {
  it('cancels the waiter: the plan shows the exact SQL, its query fails with 57014 and the session stays', async () => {
    const a = await session('A');
    const b = await session('B');
    await a.client.query('begin; select * from lockme where id = 1 for update');
    const bDone = pending(b.client, 'update lockme set v = v + 1 where id = 1');
    await waitFor('B waiting on A', () => waitingOnLock(b.pid));
    const before = await auditCount();

    const plan = await cancelBackend.plan({ pid: b.pid }, context());
    expect(plan).toMatchObject({
      action: 'session.cancel',
      target: `pid ${b.pid} (postgres@${database}, ${app}-B)`,
      danger: 'low',
      confirmToken: null,
      refused: null,
      basis: { pid: b.pid },
    });
    expect(plan.steps.map((step) => step.sql)).toEqual([`SELECT pg_cancel_backend(${b.pid})`]);

    const { events, listener } = recorder();
    const outcome = await cancelBackend.execute(plan, context(), listener);
    expect(outcome).toMatchObject({ status: 'ok', ok: true, sql: [`SELECT pg_cancel_backend(${b.pid})`] });
    expect(outcome.summary).toContain(`pg_cancel_backend(${b.pid}) returned true`);
    expect(outline(events)).toEqual(['started 0', 'finished 0', 'done ok']);
    expect(events[1]).toMatchObject({ kind: 'step', status: 'finished', message: `pg_cancel_backend(${b.pid}) returned true` });

    expect(await bDone).toBe('57014');
    expect(await alive(b.pid)).toBe(true);
    // A still holds its lock: the cancel only ended B's statement.
    expect(await alive(a.pid)).toBe(true);

    const added = await auditSince(before);
    expect(added).toHaveLength(1);
    expect(added[0]).toMatchObject({
      action: 'session.cancel',
      plan_id: plan.id,
      plan_target: plan.target,
      target: `postgres@127.0.0.1:${connection.port}/${database}`,
      sql: [`SELECT pg_cancel_backend(${b.pid})`],
      outcome: 'ok',
    });
  });

  it('terminates the blocker: its connection is closed and the waiter proceeds', async () => {
    const a = await session('A');
    const b = await session('B');
    await a.client.query('begin; select * from lockme where id = 1 for update');
    const bDone = pending(b.client, 'update lockme set v = v + 1 where id = 1');
    await waitFor('B waiting on A', () => waitingOnLock(b.pid));
    const before = await auditCount();

    const plan = await terminateBackend.plan({ pid: a.pid }, context());
    expect(plan).toMatchObject({ action: 'session.terminate', danger: 'medium', confirmToken: null, refused: null, target: `pid ${a.pid} (postgres@${database}, ${app}-A)` });
    expect(plan.steps.map((step) => step.sql)).toEqual([`SELECT pg_terminate_backend(${a.pid})`, `SELECT pid FROM pg_stat_activity WHERE pid = ${a.pid}`]);

    const { events, listener } = recorder();
    const outcome = await executePlan(plan, context(), listener);
    expect(outcome.status).toBe('ok');
    expect(outline(events)).toEqual(['started 0', 'finished 0', 'started 1', 'finished 1', 'done ok']);
    // execute() waited until the backend left pg_stat_activity.
    expect(await alive(a.pid)).toBe(false);
    expect(await bDone).toBe('done');
    await expect(a.client.query('select 1')).rejects.toThrow();

    const added = await auditSince(before);
    expect(added.map((entry) => [entry.action, entry.outcome, entry.sql])).toEqual([
      ['session.terminate', 'ok', [`SELECT pg_terminate_backend(${a.pid})`, `SELECT pid FROM pg_stat_activity WHERE pid = ${a.pid}`]],
    ]);
  });

  it('refuses at execution a session that ended after it was planned', async () => {
    const c = await session('C');
    const plan = await terminateBackend.plan({ pid: c.pid }, context());
    expect(plan.refused).toBeNull();
    await c.client.end();
    await waitFor('C gone', async () => !(await alive(c.pid)));
    const before = await auditCount();

    const { events, listener } = recorder();
    const outcome = await terminateBackend.execute(plan, context(), listener);
    expect(outcome).toMatchObject({ status: 'refused', ok: false, sql: [] });
    expect(outcome.summary).toMatch(/the session has ended/);
    expect(outline(events)).toEqual(['done failed']);
    const added = await auditSince(before);
    expect(added.map((entry) => [entry.outcome, entry.message])).toEqual([['refused', outcome.summary]]);
  });

  it('terminates several tagged sessions, confirmed by typing their count', async () => {
    const c = await session('C');
    const d = await session('D');
    const before = await auditCount();

    const plan = await terminateBackends.plan({ pids: [c.pid, d.pid, c.pid] }, context());
    expect(plan).toMatchObject({ action: 'session.terminateTagged', danger: 'high', confirmToken: '2', refused: null, title: 'Terminate 2 sessions' });
    expect(plan.target).toBe(`2 sessions: pid ${c.pid} (postgres@${database}, ${app}-C), pid ${d.pid} (postgres@${database}, ${app}-D)`);
    expect(plan.steps.map((step) => step.sql)).toEqual([
      `SELECT pg_terminate_backend(${c.pid})`,
      `SELECT pg_terminate_backend(${d.pid})`,
      `SELECT pid FROM pg_stat_activity WHERE pid IN (${c.pid}, ${d.pid})`,
    ]);

    const { events, listener } = recorder();
    const outcome = await terminateBackends.execute(plan, context(), listener);
    expect(outcome.status).toBe('ok');
    expect(outcome.summary).toBe('terminated 2 of 2: 2 sessions are gone');
    expect(outline(events)).toEqual(['started 0', 'finished 0', 'started 1', 'finished 1', 'started 2', 'finished 2', 'done ok']);
    expect(await alive(c.pid)).toBe(false);
    expect(await alive(d.pid)).toBe(false);
    expect((await auditSince(before)).map((entry) => [entry.action, entry.outcome])).toEqual([['session.terminateTagged', 'ok']]);

    // A tagged session that has ended is left out, and the count to type follows.
    const e = await session('E');
    const partial = await terminateBackends.plan({ pids: [e.pid, c.pid] }, context());
    expect(partial).toMatchObject({ confirmToken: '1', refused: null });
    expect(partial.target).toBe(`1 session: pid ${e.pid} (postgres@${database}, ${app}-E); 1 tagged session has already ended (pid ${c.pid})`);
    await recordCancelled(partial, context());
    expect(await alive(e.pid)).toBe(true);
    const last = (await audit.read()).at(-1);
    expect(last).toMatchObject({ action: 'session.terminateTagged', outcome: 'cancelled', plan_id: partial.id, sql: [`SELECT pg_terminate_backend(${e.pid})`, `SELECT pid FROM pg_stat_activity WHERE pid = ${e.pid}`] });
  });
});

describe('what actions refuse', () => {
  it("never targets pgwarden's own sessions", async () => {
    const own = await session('own', 'pgwarden');
    const other = await session('other');
    const before = await auditCount();

    const cancel = await cancelBackend.plan({ pid: own.pid }, context());
    expect(cancel.refused).toBe(`pid ${own.pid} is pgwarden's own session (pgwarden): pgwarden never signals itself`);
    const terminate = await terminateBackend.plan({ pid: own.pid }, context());
    expect(terminate.refused).toMatch(/pgwarden's own session/);
    const many = await terminateBackends.plan({ pids: [other.pid, own.pid] }, context());
    expect(many.refused).toMatch(new RegExp(`pid ${own.pid} is pgwarden's own session.*untag it`));

    // Executing a refused plan does nothing at all.
    const { events, listener } = recorder();
    const outcome = await terminateBackend.execute(terminate, context(), listener);
    expect(outcome).toMatchObject({ status: 'refused', sql: [] });
    expect(outline(events)).toEqual(['done failed']);
    expect(await alive(own.pid)).toBe(true);
    expect(await alive(other.pid)).toBe(true);

    // A pgwarden connection renamed by someone is still its own when the console lists its pid.
    const renamed = await cancelBackend.plan({ pid: other.pid }, context({ ownPids: () => [other.pid] }));
    expect(renamed.refused).toMatch(new RegExp(`pid ${other.pid} is pgwarden's own session`));
    // And the node's own connection is never a target either.
    const nodePid = Number((await node.query({ text: 'select pg_backend_pid() as pid' }))[0]?.['pid']);
    expect((await cancelBackend.plan({ pid: nodePid }, context())).refused).toMatch(/pgwarden's own session/);

    // Every refusal was audited once, at planning (the refused execute adds nothing).
    const added = await auditSince(before);
    expect(added.map((entry) => [entry.action, entry.outcome])).toEqual([
      ['session.cancel', 'refused'],
      ['session.terminate', 'refused'],
      ['session.terminateTagged', 'refused'],
      ['session.cancel', 'refused'],
      ['session.cancel', 'refused'],
    ]);
    expect(added[0]?.message).toBe(cancel.refused);
  });

  it('refuses a pid that does not exist, a non-integer pid, read-only mode and a role that may not signal', async () => {
    const victim = await session('victim');
    // pid 1 is never a PostgreSQL backend.
    const gone = await cancelBackend.plan({ pid: 1 }, context());
    expect(gone.refused).toBe('pid 1: the session has ended (no such backend in pg_stat_activity)');
    expect((await terminateBackends.plan({ pids: [1] }, context())).refused).toBe('every tagged session has already ended (pid 1)');
    expect((await terminateBackends.plan({ pids: [] }, context())).refused).toBe('no sessions are tagged');
    expect((await cancelBackend.plan({ pid: 12.5 }, context())).refused).toBe('not a process id: 12.5');

    const readOnly = context({ readOnly: true });
    const planned = await terminateBackend.plan({ pid: victim.pid }, readOnly);
    expect(planned.refused).toBe('read-only mode: pgwarden was started with --read-only');
    expect(planned.steps.map((step) => step.sql)).toEqual([`SELECT pg_terminate_backend(${victim.pid})`, `SELECT pid FROM pg_stat_activity WHERE pid = ${victim.pid}`]);
    // A plan made before read-only mode still does not run in it.
    const good = await terminateBackend.plan({ pid: victim.pid }, context());
    const outcome = await terminateBackend.execute(good, readOnly, () => undefined);
    expect(outcome).toMatchObject({ status: 'refused', summary: 'read-only mode: pgwarden was started with --read-only' });
    expect(await alive(victim.pid)).toBe(true);

    const weak = context({ connection: roleConnection });
    const denied = await cancelBackend.plan({ pid: victim.pid }, weak);
    expect(denied.refused).toBe(`pid ${victim.pid} belongs to the superuser postgres: only a superuser may signal it, and ${role} is not one`);
  });
});

describe('VACUUM and ANALYZE', () => {
  beforeAll(async () => {
    // Bloat for real: 100k rows, autovacuum off on the table, 90 % deleted.
    await admin.query(`create table bloated (id int primary key, pad text) with (autovacuum_enabled = off);
      insert into bloated select g, repeat('x', 200) from generate_series(1, 100000) g;
      delete from bloated where id % 10 <> 0;
      alter table bloated owner to ${role};
      create table fresh (id int primary key, v int) with (autovacuum_enabled = off);
      insert into fresh select g, g from generate_series(1, 5000) g;
      alter table fresh owner to ${role};
      create table theirs (id int);
      create view aview as select 1 as one`);
    // Idle sessions report their statistics only every 10 s; this one should not wait that long.
    await admin.query('select pg_stat_force_next_flush()');
    await waitFor('the dead tuples counted', async () => (await tableStats('bloated')).dead >= 80_000);
  });

  it('VACUUM (ANALYZE) of a bloated table reports progress and leaves no dead tuples', async () => {
    const ctx = context({ connection: roleConnection });
    const before = await auditCount();
    const plan = await vacuumTable.plan({ schema: 'public', table: 'bloated', analyze: true }, ctx);
    expect(plan).toMatchObject({ action: 'table.vacuum', title: 'VACUUM (ANALYZE) public.bloated', target: 'public.bloated', danger: 'medium', confirmToken: null, refused: null });
    expect(plan.steps.map((step) => step.sql)).toEqual(['SET statement_timeout = 0', "SET lock_timeout = '5s'", 'VACUUM (ANALYZE) "public"."bloated"']);
    expect(plan.steps[1]?.description).toMatch(/ACCESS EXCLUSIVE/);

    const { events, listener } = recorder();
    const outcome = await vacuumTable.execute(plan, ctx, listener);
    expect(outcome.status).toBe('ok');
    expect(outline(events)).toEqual(['started 0', 'finished 0', 'started 1', 'finished 1', 'started 2', 'finished 2', 'done ok']);
    const progress = events.filter((event) => event.kind === 'progress');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.some((event) => ['scanning heap', 'vacuuming indexes', 'vacuuming heap'].includes(event.phase) && event.fraction !== null)).toBe(true);
    for (const event of progress) {
      expect(event.phase).not.toBe('');
      if (event.fraction !== null) {
        expect(event.fraction).toBeGreaterThanOrEqual(0);
        expect(event.fraction).toBeLessThanOrEqual(1);
      }
    }
    // Progress comes only while the VACUUM step runs: between its start and its end.
    const stepStart = events.findIndex((event) => event.kind === 'step' && event.index === 2 && event.status === 'started');
    const stepEnd = events.findIndex((event) => event.kind === 'step' && event.index === 2 && event.status === 'finished');
    expect(events.findIndex((event) => event.kind === 'progress')).toBeGreaterThan(stepStart);
    expect(events.findLastIndex((event) => event.kind === 'progress')).toBeLessThan(stepEnd);

    const stats = await waitFor('the dead tuples gone', async () => {
      const now = await tableStats('bloated');
      return now.dead < 100 ? now : undefined;
    });
    expect(stats.lastVacuum).not.toBeNull();
    expect(stats.lastAnalyze).not.toBeNull();
    expect((await auditSince(before)).map((entry) => [entry.action, entry.outcome, entry.sql])).toEqual([
      ['table.vacuum', 'ok', ['SET statement_timeout = 0', "SET lock_timeout = '5s'", 'VACUUM (ANALYZE) "public"."bloated"']],
    ]);
  });

  it('gives up on the lock after lock_timeout rather than queue behind an ACCESS EXCLUSIVE lock', async () => {
    const holder = await session('lock-holder');
    await holder.client.query('begin; lock table fresh in access exclusive mode');
    const plan = await vacuumTable.plan({ schema: 'public', table: 'fresh', analyze: true }, context({ connection: roleConnection }));
    expect(plan.refused).toBeNull();
    const outcome = await vacuumTable.execute(plan, context({ connection: roleConnection }), () => undefined);
    expect(outcome).toMatchObject({ status: 'failed', sqlstate: '55P03' });
    expect(outcome.summary).toMatch(/lock timeout/);
    await holder.client.query('rollback');
  });

  it('ANALYZE updates last_analyze', async () => {
    expect((await tableStats('fresh')).lastAnalyze).toBeNull();
    const plan = await analyzeTable.plan({ schema: 'public', table: 'fresh' }, context({ connection: roleConnection }));
    expect(plan).toMatchObject({ action: 'table.analyze', danger: 'low', confirmToken: null, refused: null });
    expect(plan.steps.map((step) => step.sql)).toEqual(['SET statement_timeout = 0', "SET lock_timeout = '5s'", 'ANALYZE "public"."fresh"']);
    const { events, listener } = recorder();
    const outcome = await analyzeTable.execute(plan, context({ connection: roleConnection }), listener);
    expect(outcome.status).toBe('ok');
    expect(events.at(-1)).toEqual({ kind: 'done', ok: true, summary: outcome.summary });
    await waitFor('last_analyze set', async () => (await tableStats('fresh')).lastAnalyze !== null);
  });

  it('refuses a relation that does not exist, a view, a table the role may not maintain, and read-only mode', async () => {
    const weak = context({ connection: roleConnection });
    expect((await vacuumTable.plan({ schema: 'public', table: 'nosuch', analyze: true }, weak)).refused).toBe('public.nosuch does not exist (it may have been dropped or renamed)');
    expect((await analyzeTable.plan({ schema: 'nosuch', table: 'fresh' }, weak)).refused).toBe('nosuch.fresh does not exist (it may have been dropped or renamed)');
    expect((await vacuumTable.plan({ schema: 'public', table: 'aview', analyze: true }, weak)).refused).toBe('public.aview is a view: VACUUM works on tables and materialized views');
    expect((await vacuumTable.plan({ schema: 'public', table: 'theirs', analyze: true }, weak)).refused).toBe(
      `${role} may not VACUUM public.theirs (owned by postgres): only its owner, the database owner or a superuser may; the server would skip it with a warning`,
    );
    expect((await analyzeTable.plan({ schema: 'public', table: 'fresh' }, context({ readOnly: true }))).refused).toBe('read-only mode: pgwarden was started with --read-only');
  });
});

describe('REINDEX CONCURRENTLY of an invalid index', () => {
  /** An invalid unique index, left by a CREATE UNIQUE INDEX CONCURRENTLY that met duplicates. */
  async function invalidIndex(table: string, index: string): Promise<void> {
    await admin.query(`create table ${table} (id int); insert into ${table} values (1), (1), (2)`);
    await expect(admin.query(`create unique index concurrently ${index} on ${table} (id)`)).rejects.toMatchObject({ code: '23505' });
    expect(await indexValid(index)).toBe(false);
  }

  it('rebuilds an invalid index once the duplicates are gone, and then refuses it as valid', async () => {
    await invalidIndex('dups', 'dups_id');
    await admin.query('delete from dups where ctid = (select max(ctid) from dups where id = 1)');
    const before = await auditCount();

    const plan = await reindexInvalidIndex.plan({ schema: 'public', index: 'dups_id' }, context());
    expect(plan).toMatchObject({ action: 'index.reindex', danger: 'high', confirmToken: 'dups_id', refused: null, target: 'public.dups_id (unique, on public.dups)' });
    expect(plan.steps.map((step) => step.sql)).toEqual([
      'SET statement_timeout = 0',
      'SET lock_timeout = 0',
      'REINDEX INDEX CONCURRENTLY "public"."dups_id"',
      "SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = 'dups_id'",
    ]);

    const { events, listener } = recorder();
    const outcome = await executePlan(plan, context(), listener);
    expect(outcome.status).toBe('ok');
    expect(outline(events)).toEqual(['started 0', 'finished 0', 'started 1', 'finished 1', 'started 2', 'finished 2', 'started 3', 'finished 3', 'done ok']);
    expect(await indexValid('dups_id')).toBe(true);

    const again = await planAction('index.reindex', { schema: 'public', index: 'dups_id' }, context());
    expect(again.refused).toBe('public.dups_id is not an invalid index: it is valid, nothing to repair');
    expect((await auditSince(before)).map((entry) => [entry.action, entry.outcome])).toEqual([
      ['index.reindex', 'ok'],
      ['index.reindex', 'refused'],
    ]);
  });

  it('reports the duplicate keys and the invalid copy a failed rebuild leaves behind', async () => {
    await invalidIndex('stilldups', 'stilldups_id');
    const plan = await reindexInvalidIndex.plan({ schema: 'public', index: 'stilldups_id' }, context());
    expect(plan.refused).toBeNull();
    const outcome = await reindexInvalidIndex.execute(plan, context(), () => undefined);
    expect(outcome).toMatchObject({ status: 'failed', sqlstate: '23505' });
    expect(outcome.summary).toContain('it left public.stilldups_id_ccnew behind, invalid: drop it with DROP INDEX CONCURRENTLY "public"."stilldups_id_ccnew"');
    // The leftover is refused as a target, with the fix.
    const leftover = await reindexInvalidIndex.plan({ schema: 'public', index: 'stilldups_id_ccnew' }, context());
    expect(leftover.refused).toMatch(/half-built copy left by a failed REINDEX CONCURRENTLY: drop it/);
  });

  it('refuses an index whose build is still in progress, and one that does not exist', async () => {
    await admin.query('create table building (id int, v int); insert into building values (1, 1)');
    // An open snapshot makes CREATE INDEX CONCURRENTLY wait, its index still invalid.
    const holder = await session('snapshot-holder');
    await holder.client.query('begin isolation level repeatable read; select 1');
    const builder = await session('builder');
    const built = pending(builder.client, 'create index concurrently building_v on building (v)');
    await waitFor('the build waiting for the old snapshot', async () => {
      const result = await admin.query<{ phase: string }>('select phase from pg_stat_progress_create_index where pid = $1', [builder.pid]);
      return result.rows[0]?.phase.startsWith('waiting') === true && (await indexValid('building_v')) === false;
    });

    const plan = await reindexInvalidIndex.plan({ schema: 'public', index: 'building_v' }, context());
    expect(plan.refused).toMatch(new RegExp(`^a build is still in progress on public.building \\(CREATE INDEX CONCURRENTLY by pid ${builder.pid}, phase "waiting`));

    await holder.client.query('commit');
    expect(await built).toBe('done');
    expect(await indexValid('building_v')).toBe(true);
    expect((await reindexInvalidIndex.plan({ schema: 'public', index: 'nosuch' }, context())).refused).toBe('there is no index public.nosuch (it may have been dropped or renamed)');
  });
});

describe('the audit log', () => {
  it('holds one JSON line per action with the SQL and the outcome, and never the password', async () => {
    const text = await readFile(audit.path, 'utf8');
    expect(text).not.toContain(secret);
    const lines = text.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(10);
    for (const line of lines) {
      const entry = JSON.parse(line) as AuditEntry;
      expect(Object.keys(entry).sort()).toEqual(['action', 'host', 'message', 'os_user', 'outcome', 'plan_id', 'plan_target', 'sql', 'target', 'time'].sort());
      expect(new Date(entry.time).toISOString()).toBe(entry.time);
      expect(entry.target).toMatch(new RegExp(`@127\\.0\\.0\\.1:\\d+/${database}$`));
      expect(['ok', 'failed', 'refused', 'cancelled']).toContain(entry.outcome);
      expect(entry.os_user).not.toBe('');
    }
  });
});
