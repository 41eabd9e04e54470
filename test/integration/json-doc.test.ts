// docs/json.md promises every field of `pgwarden show --json`. This test produces real situations
// (an idle transaction, a lock wait, a primary with a streaming standby and slots, pg_stat_statements,
// pgstattuple, a running VACUUM, an invalid index, PgBouncer with a linked client), runs the real
// command line, and compares the key paths of its output with the fields the document lists.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProbeId } from '../../src/probes/types.js';
import { pgwarden } from '../support/cli.js';
import { createPrimary, createStandby, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const docFile = fileURLToPath(new URL('../../docs/json.md', import.meta.url));
const unique = `${process.pid}_${Date.now()}`;
const lockTable = `json_doc_locks_${unique}`;
const bouncerAlias = `json_doc_${unique}`;
const dir = mkdtempSync(join(tmpdir(), 'pgwarden-json-doc-'));

// Every probe must have a section: `satisfies` rejects a misspelt id, Exhaustive makes a new ProbeId a compile error until it is listed.
const allProbes = ['server', 'activity', 'connections', 'locks', 'databases', 'tables', 'replication', 'statements', 'pgbouncer', 'storage', 'sequences', 'timeouts', 'pgbouncer-config'] as const satisfies readonly ProbeId[];
// 'application' is not a probe `show` runs: src/health fills it in for the application checks.
type Exhaustive = Exclude<ProbeId, (typeof allProbes)[number] | 'application'> extends never ? true : never;
const exhaustive: Exhaustive = true;

/**
 * Object fields whose keys are data, not names: only the field itself is documented.
 * pgbouncer.lists: one key per SHOW LISTS row, PgBouncer's own names, which vary with its version.
 */
const opaque: Readonly<Record<string, readonly string[]>> = { pgbouncer: ['lists'] };

/**
 * Documented fields the real output is allowed to lack, each with the reason. The situations below
 * fill every array and nested object on PostgreSQL 15, so no field needs an exemption today; a new
 * one goes here only when no real situation can produce it reliably on the test machine.
 */
const staleExempt: Readonly<Record<string, Readonly<Record<string, string>>>> = {};

let admin: pg.Client | undefined;
let holder: pg.Client | undefined;
let waiterQuery: Promise<unknown> | undefined;
let holderPid = 0;
let waiterPid = 0;
let idlePid = 0;
let primary: TestCluster | undefined;
let standby: TestCluster | undefined;
let vacuumPid = 0;
let vacuumQuery: Promise<unknown> | undefined;
let bouncer: TestPgBouncer | undefined;
let bouncerClient: pg.Client | undefined;
let configFile = '';

/** The backticked paths in the first column of the tables of section `## title`. */
function documentedFields(markdown: string, title: string): Set<string> {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === `## ${title}`);
  if (start < 0) throw new Error(`docs/json.md has no "## ${title}" section`);
  const fields = new Set<string>();
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('## ')) break;
    if (!line.startsWith('|')) continue;
    const first = line.split('|')[1]?.trim() ?? '';
    const match = /^`([^`]+)`$/.exec(first);
    if (match?.[1] !== undefined) fields.add(match[1]);
  }
  return fields;
}

interface Observed {
  /** Every key path seen, containers included (`standbys`, `standbys[].lag`, `standbys[].lag.bytes`). */
  readonly paths: Set<string>;
  /** Container paths seen only empty or null: their fields could not be observed. */
  readonly hollow: Set<string>;
  /** Container paths seen non-empty at least once. */
  readonly filled: Set<string>;
}

function observe(): Observed {
  return { paths: new Set(), hollow: new Set(), filled: new Set() };
}

function isObject(value: Json): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function collect(value: Json, path: string, into: Observed, opaquePaths: readonly string[]): void {
  if (Array.isArray(value)) {
    if (value.some(isObject)) into.filled.add(path);
    else if (value.length === 0) into.hollow.add(path);
    for (const item of value) if (isObject(item)) collect(item, `${path}[]`, into, opaquePaths);
    return;
  }
  if (value === null) {
    into.hollow.add(path);
    return;
  }
  if (!isObject(value)) return;
  if (path !== '') into.filled.add(path);
  for (const [key, item] of Object.entries(value)) {
    const child = path === '' ? key : `${path}.${key}`;
    into.paths.add(child);
    if (!opaquePaths.includes(child)) collect(item, child, into, opaquePaths);
  }
}

/** Runs `pgwarden show <names> --json` and returns the parsed document with the exit code. */
async function showJson(args: readonly string[]): Promise<{ code: number; body: Json; stderr: string }> {
  const run = await pgwarden(['show', ...args, '--json']);
  let body: Json;
  try {
    body = JSON.parse(run.stdout) as Json;
  } catch {
    throw new Error(`pgwarden show ${args.join(' ')} printed no JSON (exit ${run.code}):\n${run.stdout}\n${run.stderr}`);
  }
  return { code: run.code, body, stderr: run.stderr };
}

/** One probe's snapshot from a single-probe run, failing with the envelope when it is not ok. */
async function snapshotOf(probe: ProbeId, target: readonly string[]): Promise<JsonObject> {
  const { code, body, stderr } = await showJson([probe, ...target]);
  if (!isObject(body)) throw new Error(`show ${probe} printed ${JSON.stringify(body).slice(0, 200)} instead of one envelope`);
  expect(body, stderr).toMatchObject({ probe, status: 'ok' });
  expect(code).toBe(0);
  const snapshot = body['snapshot'] ?? null;
  if (!isObject(snapshot)) throw new Error(`show ${probe}: no snapshot object`);
  return snapshot;
}

/** Both directions: every field seen is documented; every documented field is seen (or exempt, with its reason). */
function compareWithDoc(section: string, snapshots: readonly JsonObject[], opaquePaths: readonly string[] = []): void {
  const seen = observe();
  for (const snapshot of snapshots) collect(snapshot, '', seen, opaquePaths);
  const documented = documentedFields(readFileSync(docFile, 'utf8'), section);

  const undocumented = [...seen.paths].filter((path) => !documented.has(path)).sort();
  const exempt = staleExempt[section] ?? {};
  const stale = [...documented]
    .filter((path) => !seen.paths.has(path) && exempt[path] === undefined)
    .map((path) => {
      // Name the container that hid it, so an unfilled situation is not mistaken for a stale row.
      const hidden = [...seen.hollow].filter((container) => !seen.filled.has(container) && (path.startsWith(`${container}.`) || path.startsWith(`${container}[].`)));
      return hidden.length === 0 ? path : `${path} (never observed: ${hidden.join(', ')} was always empty or null)`;
    })
    .sort();
  // One assertion, so that a renamed field shows as both its halves at once.
  expect(
    { undocumented, stale },
    `"## ${section}" of docs/json.md against the real output: undocumented = in the output but not in the doc; stale = in the doc but not in the output`,
  ).toEqual({ undocumented: [], stale: [] });
}

function arrayAt(object: JsonObject, key: string): JsonObject[] {
  const value = object[key];
  if (!Array.isArray(value)) throw new Error(`"${key}" is not an array`);
  return value.filter(isObject);
}

beforeAll(async () => {
  // The shared server: an idle transaction, and a row lock that a second session waits for.
  admin = await openSession(dsn, 'json-doc-admin');
  await admin.query(`create table ${lockTable} (id int primary key, v int not null)`);
  await admin.query(`insert into ${lockTable} values (1, 0)`);
  const idle = await openSession(dsn, 'json-doc-idle');
  await idle.query('begin');
  await idle.query('select txid_current()');
  idlePid = await backendPid(idle);
  holder = await openSession(dsn, 'json-doc-holder');
  holderPid = await backendPid(holder);
  await holder.query('begin');
  await holder.query(`update ${lockTable} set v = v + 1 where id = 1`);
  const waiter = await openSession(dsn, 'json-doc-waiter');
  waiterPid = await backendPid(waiter);
  waiterQuery = waiter.query(`update ${lockTable} set v = v + 1 where id = 1`).then(() => undefined, (error: unknown) => error);
  await waitFor('the second update to wait for the row lock', async () => {
    const rows = await admin!.query<{ w: string | null }>('select wait_event_type as w from pg_stat_activity where pid = $1', [waiterPid]);
    return rows.rows[0]?.w === 'Lock';
  });

  // A private primary (pg_stat_statements, pgstattuple) with a standby on a slot, and a slot on the standby.
  primary = await createPrimary({ name: 'json-doc', preload: ['pg_stat_statements'] });
  standby = await createStandby(primary, { name: 'json-doc-standby', slot: 'json_doc_standby' });
  const p = primary;
  await p.sql('create extension pg_stat_statements');
  await p.sql('create extension pgstattuple');
  // Most rows deleted after ANALYZE, so the heap and its primary key carry bloat to estimate and confirm.
  await p.sql(`create table bloated (id int primary key, payload text not null) with (autovacuum_enabled = false)`);
  await p.sql(`insert into bloated select i, repeat('x', 100) from generate_series(1, 20000) i`);
  await p.sql('delete from bloated where id % 7 <> 0');
  await p.sql('analyze bloated');
  // A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index behind.
  await p.sql('create table dup_keys (v int not null)');
  await p.sql('insert into dup_keys select 1 from generate_series(1, 2)');
  await p.sql('create unique index concurrently dup_keys_v_key on dup_keys (v)').then(
    () => {
      throw new Error('the unique index on duplicate keys was built');
    },
    () => undefined,
  );
  // A VACUUM slowed down by cost delays stays in pg_stat_progress_vacuum while the CLI runs.
  await p.sql(`create table slow_vacuum with (autovacuum_enabled = false) as select i as id, repeat('y', 100) as payload from generate_series(1, 50000) i`);
  const vacuumer = await openSession(p.dsn(), 'json-doc-vacuum');
  vacuumPid = await backendPid(vacuumer);
  await vacuumer.query('set vacuum_cost_delay = 100');
  await vacuumer.query('set vacuum_cost_limit = 1');
  vacuumQuery = vacuumer.query('vacuum slow_vacuum').then(() => undefined, (error: unknown) => error);
  await waitFor('the VACUUM to show in pg_stat_progress_vacuum', async () => {
    const rows = await p.sql(`select 1 from pg_stat_progress_vacuum where pid = ${vacuumPid}`);
    return rows.length === 1;
  });
  for (let i = 0; i < 3; i++) await p.sql(`select count(*) from bloated where id > ${i}`);
  const s = standby;
  await s.sql(`select pg_create_physical_replication_slot('json_doc_on_standby')`);
  // A sequence feeding a column, for the sequences probe.
  await p.sql('create table json_doc_ids (id integer generated always as identity primary key)');

  // PgBouncer in front of the shared server, with one client holding a linked server connection.
  const backend = new URL(dsn);
  bouncer = await startPgBouncer({
    backendHost: backend.hostname,
    backendPort: Number(backend.port || 5432),
    databases: { [bouncerAlias]: `dbname=${backend.pathname.slice(1)}` },
    poolMode: 'session',
  });
  bouncerClient = await openSession(bouncer.dsn(bouncerAlias), 'json-doc-bouncer-client');
  await bouncerClient.query('select 1');
  configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify({ clusters: [{ name: 'doc', nodes: [{ name: 'local', dsn }], pgbouncer: { dsn: bouncer.adminDsn } }] }));
});

afterAll(async () => {
  // Order matters: a client ending while its query runs waits for the server to answer.
  await bouncerClient?.end().catch(() => undefined);
  await bouncer?.stop();
  if (primary !== undefined && vacuumPid !== 0) await primary.sql(`select pg_cancel_backend(${vacuumPid})`).catch(() => undefined);
  await vacuumQuery;
  await destroyAll();
  await holder?.query('rollback').catch(() => undefined);
  await waiterQuery;
  await admin?.query(`drop table if exists ${lockTable}`).catch(() => undefined);
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('docs/json.md against the real `pgwarden show --json`', () => {
  it('documents every envelope field: ok, unsupported and error envelopes, one object or an array', async () => {
    // Two names print an array; pg_stat_statements is not installed on the shared server.
    const mixed = await showJson(['server', 'statements', '--dsn', dsn]);
    expect(mixed.code).toBe(0);
    expect(Array.isArray(mixed.body)).toBe(true);
    const [ok, unsupported] = (mixed.body as Json[]).filter(isObject);
    expect(ok).toMatchObject({ probe: 'server', status: 'ok', target: 'postgres@127.0.0.1:5432/test' });
    expect(typeof ok?.['duration_ms']).toBe('number');
    const at = ok?.['at'];
    expect(typeof at === 'string' && new Date(at).toISOString() === at).toBe(true);
    expect(unsupported).toMatchObject({ probe: 'statements', status: 'unsupported', unsupported: { kind: 'extension' } });

    const alone = await showJson(['statements', '--dsn', dsn]);
    expect(alone.code).toBe(3);
    expect(isObject(alone.body)).toBe(true);

    // Nothing listens on port 1: the first probe fails and the rest are not run.
    const failed = await showJson(['server', 'activity', '--dsn', 'postgresql://postgres:secret@127.0.0.1:1/x']);
    expect(failed.code).toBe(1);
    const [error, ...rest] = (failed.body as Json[]).filter(isObject);
    expect(error).toMatchObject({ probe: 'server', status: 'error', error: { sqlstate: null } });
    expect(rest).toEqual([]);
    expect(JSON.stringify(failed.body)).not.toContain('secret');

    // The snapshot's own fields belong to the probe sections.
    const envelopes = [ok, unsupported, error].map((envelope): JsonObject => {
      if (envelope === undefined) throw new Error('an envelope is missing');
      return 'snapshot' in envelope ? { ...envelope, snapshot: {} } : envelope;
    });
    compareWithDoc('Envelope', envelopes);
  });

  it('documents every field of server', async () => {
    const snapshot = await snapshotOf('server', ['--dsn', dsn]);
    expect(snapshot['role']).toBe('primary');
    compareWithDoc('server', [snapshot]);
  });

  it('documents every field of activity, and every session carries its pid', async () => {
    const snapshot = await snapshotOf('activity', ['--dsn', dsn]);
    const sessions = arrayAt(snapshot, 'sessions');
    expect(sessions.every((session) => typeof session['pid'] === 'number')).toBe(true);
    expect(sessions.find((session) => session['pid'] === idlePid)).toMatchObject({ state: 'idle in transaction', application: 'json-doc-idle' });
    compareWithDoc('activity', [snapshot]);
  });

  it('documents every field of connections', async () => {
    const snapshot = await snapshotOf('connections', ['--dsn', dsn]);
    expect(snapshot['client_backends']).toBeGreaterThanOrEqual(4);
    compareWithDoc('connections', [snapshot]);
  });

  it('documents every field of locks, and every waiting session carries blocked_by', async () => {
    const snapshot = await snapshotOf('locks', ['--dsn', dsn]);
    const waiters = arrayAt(snapshot, 'waiters');
    expect(waiters.every((waiter) => Array.isArray(waiter['blocked_by']) && waiter['blocked_by'].every((pid) => typeof pid === 'number'))).toBe(true);
    expect(waiters.find((waiter) => waiter['pid'] === waiterPid)).toMatchObject({ blocked_by: [holderPid], application: 'json-doc-waiter' });
    expect(arrayAt(snapshot, 'root_blockers').find((blocker) => blocker['pid'] === holderPid)).toMatchObject({ waiting_behind: 1, state: 'idle in transaction' });
    compareWithDoc('locks', [snapshot]);
  });

  it('documents every field of replication, as a primary and as a standby', async () => {
    const onPrimary = await snapshotOf('replication', ['--dsn', primary!.dsn()]);
    const onStandby = await snapshotOf('replication', ['--dsn', standby!.dsn()]);
    expect(onPrimary['role']).toBe('primary');
    expect(arrayAt(onPrimary, 'standbys')).toHaveLength(1);
    expect(arrayAt(onPrimary, 'slots').map((slot) => slot['name'])).toEqual(['json_doc_standby']);
    expect(onStandby['role']).toBe('standby');
    expect(onStandby['receiver']).toMatchObject({ status: 'streaming', slot_name: 'json_doc_standby' });
    expect(arrayAt(onStandby, 'slots').map((slot) => slot['name'])).toEqual(['json_doc_on_standby']);
    compareWithDoc('replication', [onPrimary, onStandby]);
  });

  it('documents every field of statements, interval figures included', async () => {
    const snapshot = await snapshotOf('statements', ['--dsn', primary!.dsn()]);
    const statements = arrayAt(snapshot, 'statements');
    expect(statements.some((statement) => isObject(statement['interval'] ?? null))).toBe(true);
    compareWithDoc('statements', [snapshot]);
  });

  it('documents every field of pgbouncer, rates and linked connections included', async () => {
    const snapshot = await snapshotOf('pgbouncer', ['--config', configFile]);
    const clients = arrayAt(snapshot, 'clients');
    const mine = clients.find((client) => client['application_name'] === 'json-doc-bouncer-client');
    expect(mine).toMatchObject({ type: 'client', database: bouncerAlias });
    expect(arrayAt(snapshot, 'servers').some((server) => server['link'] === mine?.['ptr'])).toBe(true);
    expect(arrayAt(snapshot, 'stats').some((stats) => isObject(stats['rates'] ?? null))).toBe(true);
    compareWithDoc('pgbouncer', [snapshot], opaque['pgbouncer']);
  });

  it('documents every field of databases', async () => {
    const snapshot = await snapshotOf('databases', ['--dsn', primary!.dsn()]);
    expect(arrayAt(snapshot, 'databases').map((database) => database['name'])).toContain('postgres');
    compareWithDoc('databases', [snapshot]);
  });

  it('documents every field of tables, with bloat confirmed, a running VACUUM and an invalid index', async () => {
    const snapshot = await snapshotOf('tables', ['--dsn', primary!.dsn()]);
    expect(arrayAt(snapshot, 'vacuums').map((vacuum) => vacuum['pid'])).toContain(vacuumPid);
    expect(arrayAt(snapshot, 'invalid_indexes').map((index) => index['name'])).toContain('dup_keys_v_key');
    expect(arrayAt(snapshot, 'tables').some((table) => isObject(table['confirmed'] ?? null))).toBe(true);
    expect(arrayAt(snapshot, 'indexes').some((index) => isObject(index['confirmed'] ?? null))).toBe(true);
    compareWithDoc('tables', [snapshot]);
  });

  it('documents every field of storage, with the free disk of the local data directory', async () => {
    const snapshot = await snapshotOf('storage', ['--dsn', primary!.dsn()]);
    expect(snapshot['disk']).toMatchObject({ local: true, unknown_reason: null });
    compareWithDoc('storage', [snapshot]);
  });

  it('documents every field of sequences', async () => {
    const snapshot = await snapshotOf('sequences', ['--dsn', primary!.dsn()]);
    expect(arrayAt(snapshot, 'sequences').map((sequence) => sequence['name'])).toContain('json_doc_ids_id_seq');
    compareWithDoc('sequences', [snapshot]);
  });

  it('documents every field of timeouts, with a role setting in one database', async () => {
    await primary!.sql(`create role json_doc_app login; alter role json_doc_app in database postgres set statement_timeout = '30s'`);
    const snapshot = await snapshotOf('timeouts', ['--dsn', primary!.dsn()]);
    expect(arrayAt(snapshot, 'settings')).toContainEqual({ role: 'json_doc_app', database: 'postgres', name: 'statement_timeout', value: '30s', value_ms: 30_000 });
    expect(arrayAt(snapshot, 'roles').find((role) => role['name'] === 'json_doc_app')).toMatchObject({ superuser: false, self: false });
    compareWithDoc('timeouts', [snapshot]);
  });

  it('documents every field of pgbouncer-config', async () => {
    const snapshot = await snapshotOf('pgbouncer-config', ['--config', configFile]);
    expect(snapshot['pool_mode']).toBe('session');
    compareWithDoc('pgbouncer-config', [snapshot]);
  });

  it('has a section for every probe and no section for a probe that does not exist', () => {
    const markdown = readFileSync(docFile, 'utf8');
    const sections = markdown.split('\n').filter((line) => line.startsWith('## ')).map((line) => line.slice(3).trim());
    expect(exhaustive).toBe(true);
    const general = ['Envelope', 'Exit codes', 'Conventions', 'Stability'];
    expect(sections.filter((title) => !general.includes(title)).sort()).toEqual([...allProbes].sort());
  });
});
