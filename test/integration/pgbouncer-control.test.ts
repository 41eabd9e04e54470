// PgBouncer driven through a switchover (src/cluster/pgbouncer-control.ts), against a real PgBouncer:
// PAUSE holds new queries until RESUME; a PAUSE that cannot drain is given up and resumed; an
// error inside withPause still resumes (DESIGN §7 rule 13); repointing rewrites pgbouncer.ini and
// the next server connection goes to the new backend.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowQuickLogins, PgBouncerControl, repointPgBouncer, withPause } from '../../src/cluster/pgbouncer-control.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';

let old: TestCluster;
let bouncer: TestPgBouncer;
let control: PgBouncerControl;
const clients: pg.Client[] = [];
let prober: pg.Client;
/** Probe queries left waiting in a paused pool: answered after RESUME. */
const pendingProbes: Promise<void>[] = [];

async function client(): Promise<pg.Client> {
  const made = new pg.Client({ connectionString: bouncer.dsn('app') });
  made.on('error', () => undefined);
  await made.connect();
  clients.push(made);
  return made;
}

/** Clients waiting in the app pool (SHOW POOLS cl_waiting). */
async function waitingClients(): Promise<number> {
  const admin = new pg.Client({ connectionString: bouncer.adminDsn });
  await admin.connect();
  try {
    const { rows } = await admin.query('SHOW POOLS');
    return rows.filter((row: Record<string, unknown>) => row['database'] === 'app').reduce((sum: number, row: Record<string, unknown>) => sum + Number(row['cl_waiting']), 0);
  } finally {
    await admin.end();
  }
}

/**
 * Whether PgBouncer is paused, seen as a client sees it: a query on a new connection waits in the
 * pool (PgBouncer 1.18 has no SHOW STATE). Waits until the answer is clear either way.
 */
async function paused(): Promise<boolean> {
  // A client connected earlier: a new login may itself wait for a server while paused.
  const probe = prober;
  let answered = false;
  const query = probe.query('select 1').then(() => {
    answered = true;
  }, () => undefined);
  await waitFor('the probe query to be answered or to wait in the pool', async () => answered || (await waitingClients()) > 0);
  if (answered) return false;
  pendingProbes.push(query);
  return true;
}

/** PgBouncer is not paused: a query answers (within 10 s, else the test fails saying so). */
async function answers(): Promise<void> {
  await prober.query({ text: 'select 1', query_timeout: 10_000 } as pg.QueryConfig);
}

beforeAll(async () => {
  old = await createPrimary({ name: 'bouncer-old' });
  bouncer = await startPgBouncer({ backendHost: old.host, backendPort: old.port, databases: { app: 'dbname=postgres' }, poolMode: 'transaction', defaultPoolSize: 2 });
  prober = await client();
  await prober.query('select 1');
  control = new PgBouncerControl({ connection: resolveConnection(bouncer.adminDsn, 'test'), ini: join(bouncer.dir, 'pgbouncer.ini') });
});

afterAll(async () => {
  for (const one of clients) await one.end().catch(() => undefined);
  await control.close();
  await bouncer.stop();
  await destroyAll();
});

describe('withPause', () => {
  it('holds a query that arrives while paused and lets it through on RESUME', async () => {
    const app = await client();
    let answered = false;
    const stats = await withPause(control, 5000, async () => {
      const waiting = app.query('select 1 as one').then((result) => {
        answered = true;
        return result;
      });
      // The query reached PgBouncer and waits there: the pool shows a waiting client.
      await waitFor('the client to wait in the paused pool', async () => (await waitingClients()) > 0);
      expect(answered).toBe(false);
      // Returned wrapped: awaiting the query here would wait for the RESUME that follows this work.
      return { waiting };
    });
    expect((await stats.waiting).rows[0]).toEqual({ one: 1 });
    expect(answered).toBe(true);
    await answers();
  });

  it('gives up a PAUSE that a transaction in flight keeps from draining, and resumes', async () => {
    const holder = await client();
    await holder.query('begin');
    await holder.query('select 1');
    const started = Date.now();
    await expect(withPause(control, 1000, async () => 'never')).rejects.toThrow(/PAUSE did not complete within 1 s.*PgBouncer was resumed/);
    expect(Date.now() - started).toBeLessThan(8000);
    await answers();
    await holder.query('commit');
    const other = await client();
    expect((await other.query('select 2 as two')).rows[0]).toEqual({ two: 2 });
  });

  it('resumes when the work fails, and rethrows the work\'s error', async () => {
    let pausedInside: boolean | undefined;
    await expect(withPause(control, 5000, async () => {
      pausedInside = await paused();
      throw new Error('promotion failed');
    })).rejects.toThrow('promotion failed');
    expect(pausedInside).toBe(true);
    await Promise.all(pendingProbes.splice(0));
    await answers();
  });
});

describe('repointPgBouncer', () => {
  it('rewrites [databases] and sends the next server connection to the new backend', async () => {
    const app = await client();
    expect((await app.query('select inet_server_port() as port')).rows[0]).toEqual({ port: old.port });
    const entries = await withPause(control, 5000, async () => repointPgBouncer(control, { host: old.host, port: old.port }, { host: '127.0.0.1', port: 5432 }));
    expect(entries).toEqual(['app']);
    expect(await readFile(join(bouncer.dir, 'pgbouncer.ini'), 'utf8')).toMatch(/^app = host=127\.0\.0\.1 port=5432 dbname=postgres$/m);
    await waitFor('PgBouncer to use the new backend', async () => (await app.query('select inet_server_port() as port')).rows[0]?.port === 5432);
    expect((await control.databases()).find((entry) => entry.name === 'app')).toMatchObject({ host: '127.0.0.1', port: 5432 });
    await answers();
  });

  it('is refused with the fix when the config names no ini file', async () => {
    const blind = new PgBouncerControl({ connection: control.config.connection, ini: undefined });
    await expect(repointPgBouncer(blind, { host: old.host, port: old.port }, { host: '127.0.0.1', port: 5432 })).rejects.toThrow(/no "ini" path/);
    await blind.close();
  });
});

describe('allowQuickLogins', () => {
  it('lets PgBouncer log in to the new primary at once after its logins to the dead one failed, then puts server_login_retry back', async () => {
    const dead = await createPrimary({ name: 'bouncer-dead' });
    const other = await startPgBouncer({ backendHost: dead.host, backendPort: dead.port, databases: { app: 'dbname=postgres' }, poolMode: 'transaction' });
    const otherControl = new PgBouncerControl({ connection: resolveConnection(other.adminDsn, 'test'), ini: join(other.dir, 'pgbouncer.ini') });
    const connectApp = async (): Promise<pg.Client> => {
      const made = new pg.Client({ connectionString: other.dsn('app') });
      made.on('error', () => undefined);
      await made.connect();
      clients.push(made);
      return made;
    };
    try {
      expect(await otherControl.setting('server_login_retry')).toBe('15');
      const app = await connectApp();
      await app.query('select 1');
      await dead.stop('immediate');
      // The primary is gone: PgBouncer's login to it fails, and it holds new logins back (server_login_retry).
      const waiting = app.query('select inet_server_port() as port');
      await waitFor('PgBouncer to log a failed login to the dead primary', async () => /connect failed|login failed|could not connect/i.test(await other.log()));
      const failedAt = Date.now();
      let restore: ((entries: readonly string[], timeoutMs: number) => Promise<void>) | undefined;
      await withPause(otherControl, 5000, async () => {
        await repointPgBouncer(otherControl, { host: dead.host, port: dead.port }, { host: '127.0.0.1', port: 5432 });
        restore = await allowQuickLogins(otherControl);
        expect(await otherControl.setting('server_login_retry')).toBe('0');
      });
      await restore?.(['app'], 5000);
      // The client that waited through all of it is answered by the new primary, well within the
      // 15 s PgBouncer would otherwise hold logins back after the failed one.
      expect((await waiting).rows[0]).toEqual({ port: 5432 });
      expect(Date.now() - failedAt).toBeLessThan(15_000);
      expect(await otherControl.setting('server_login_retry')).toBe('15');
    } finally {
      await otherControl.close();
      await other.stop();
    }
  });
});
