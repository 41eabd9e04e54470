import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { pgbouncerProbe, type PgBouncerPool, type PgBouncerSnapshot } from '../../src/probes/pgbouncer.js';
import { waitFor } from '../support/cluster.js';
import { startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';
import { closeNodes, probeResult } from '../support/probe.js';
import { closeAll, openSession } from '../support/sessions.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const backend = new URL(dsn);
// A name of our own, so nothing else on the machine can land in this pool.
const alias = 'pgwarden_pgb_probe_test';
let bouncer: TestPgBouncer;

beforeAll(async () => {
  bouncer = await startPgBouncer({
    backendHost: backend.hostname,
    backendPort: Number(backend.port || 5432),
    databases: { [alias]: `dbname=${backend.pathname.slice(1)}` },
    poolMode: 'session',
    defaultPoolSize: 2,
  });
});

afterAll(async () => {
  await closeAll();
  await closeNodes();
  await bouncer.stop();
});

// Each probe run opens an admin connection; close it so polling never piles up console clients.
// When each snapshot was taken, as the runner would remember it.
const takenAt = new WeakMap<PgBouncerSnapshot, Date>();

async function snapshot(previous?: PgBouncerSnapshot): Promise<PgBouncerSnapshot> {
  try {
    const result = await probeResult(pgbouncerProbe, dsn, {
      pgbouncerDsn: bouncer.adminDsn,
      ...(previous === undefined ? {} : { previous: { snapshot: previous, at: takenAt.get(previous) ?? new Date(0) } }),
    });
    if (result.status !== 'ok') throw new Error(`pgbouncer probe: ${JSON.stringify(result)}`);
    takenAt.set(result.snapshot, result.at);
    return result.snapshot;
  } finally {
    await closeNodes();
  }
}

function poolOf(s: PgBouncerSnapshot): PgBouncerPool | undefined {
  return s.pools.find((pool) => pool.database === alias && pool.user === 'postgres');
}

describe('pgbouncer probe', () => {
  it('sees a client waiting for a server, its growing wait, and who holds the servers', async () => {
    // Release everything even on failure, or the next test would queue behind these sessions.
    const waiter = new pg.Client({ connectionString: bouncer.dsn(alias), application_name: 'test-pgb-waiter' });
    waiter.on('error', () => undefined);
    try {
      const holders = [await openSession(bouncer.dsn(alias), 'test-pgb-holder-1'), await openSession(bouncer.dsn(alias), 'test-pgb-holder-2')];
      for (const holder of holders) await holder.query('begin; select 1');

      // Pool size 2, both servers taken: this client's query queues in PgBouncer.
      const answered = (async () => {
        await waiter.connect();
        const result = await waiter.query<{ answer: number }>('select 42 as answer');
        return result.rows[0]?.answer;
      })();
      answered.catch(() => undefined);

      const waiting = await waitFor('a waiting client in the pool', async () => {
        const s = await snapshot();
        const pool = poolOf(s);
        return pool !== undefined && pool.clWaiting >= 1 && pool.maxWaitSeconds > 0 ? s : undefined;
      });
      const pool = poolOf(waiting)!;
      expect(pool).toMatchObject({ clActive: 2, clWaiting: 1, svActive: 2, svIdle: 0, poolMode: 'session' });
      expect(waiting.totals.clientsWaiting).toBeGreaterThanOrEqual(1);
      expect(waiting.totals.maxWaitSeconds).toBeGreaterThanOrEqual(pool.maxWaitSeconds);
      expect(waiting.version).toMatch(/^PgBouncer \d+\.\d+/);
      expect(waiting.versionNum).toBeGreaterThanOrEqual(10800);
      expect(waiting.lists['pools']).toBeGreaterThanOrEqual(1);

      const grown = await waitFor('maxwait to grow', async () => {
        const s = await snapshot();
        const p = poolOf(s);
        return p !== undefined && p.clWaiting >= 1 && p.maxWaitSeconds > pool.maxWaitSeconds ? s : undefined;
      });
      expect(poolOf(grown)!.maxWaitSeconds).toBeGreaterThan(pool.maxWaitSeconds);

      const mine = grown.clients.filter((c) => c.database === alias);
      const holderRows = mine.filter((c) => c.applicationName?.startsWith('test-pgb-holder') === true);
      expect(holderRows).toHaveLength(2);
      for (const holder of holderRows) {
        expect(holder).toMatchObject({ type: 'client', user: 'postgres', state: 'active', addr: '127.0.0.1' });
        expect(holder.port).toBeGreaterThan(0);
        expect(holder.connectTime).toBeInstanceOf(Date);
        expect(Math.abs(Date.now() - holder.connectTime!.getTime())).toBeLessThan(120_000);
        expect(holder.link).not.toBeNull();
      }
      const waiterRow = mine.find((c) => c.applicationName === 'test-pgb-waiter');
      expect(waiterRow).toMatchObject({ type: 'client', user: 'postgres', state: 'waiting', link: null });
      expect(waiterRow?.waitSeconds).toBeGreaterThan(0);
      // The probe's own console session is not listed.
      expect(grown.clients.some((c) => c.applicationName?.startsWith('pgwarden') === true)).toBe(false);

      const servers = grown.servers.filter((s) => s.database === alias);
      expect(servers).toHaveLength(2);
      for (const server of servers) {
        expect(server).toMatchObject({ type: 'server', user: 'postgres', state: 'active', addr: backend.hostname, port: Number(backend.port || 5432) });
        expect(server.remotePid).toBeGreaterThan(0);
      }
      // Each holder is paired with one of the servers, and the server points back at it.
      const serverPtrs = servers.map((s) => s.ptr).sort();
      expect(holderRows.map((h) => h.link).sort()).toEqual(serverPtrs);
      expect(servers.map((s) => s.link).sort()).toEqual(holderRows.map((h) => h.ptr).sort());
      // remote_pid is a real backend of the PostgreSQL server, running a holder's session.
      const direct = await openSession(dsn, 'test-pgb-checker');
      const backends = await direct.query<{ application_name: string }>('select application_name from pg_stat_activity where pid = any($1::int[]) order by 1', [
        servers.map((s) => s.remotePid),
      ]);
      expect(backends.rows.map((r) => r.application_name)).toEqual(['test-pgb-holder-1', 'test-pgb-holder-2']);

      // Session pooling keeps a server until its client leaves: disconnecting a holder frees one.
      await Promise.all(holders.map((holder) => holder.end()));
      expect(await answered).toBe(42);
      const drained = await waitFor('the queue to drain', async () => {
        const s = await snapshot();
        const p = poolOf(s);
        return p !== undefined && p.clWaiting === 0 ? s : undefined;
      });
      expect(poolOf(drained)).toMatchObject({ clWaiting: 0, maxWaitSeconds: 0, clActive: 1 });
      expect(drained.clients.find((c) => c.applicationName === 'test-pgb-waiter')).toMatchObject({ state: 'active' });
    } finally {
      await closeAll();
      await waiter.end().catch(() => undefined);
    }
  });

  it('computes traffic rates from the previous snapshot', async () => {
    const first = await snapshot();
    const before = first.stats.find((d) => d.database === alias);
    expect(before).toBeDefined();
    expect(before?.rates).toBeNull();

    const client = await openSession(bouncer.dsn(alias), 'test-pgb-stats');
    for (let i = 0; i < 25; i++) await client.query('select pg_sleep(0.001)');

    const later = await waitFor('the queries to be counted', async () => {
      const s = await snapshot(first);
      const d = s.stats.find((x) => x.database === alias);
      return d !== undefined && d.totalQueryCount >= before!.totalQueryCount + 25 ? s : undefined;
    });
    const after = later.stats.find((d) => d.database === alias)!;
    const rates = after.rates!;
    expect(rates).not.toBeNull();
    const interval = ((takenAt.get(later)?.getTime() ?? 0) - (takenAt.get(first)?.getTime() ?? 0)) / 1000;
    expect(rates.intervalSeconds).toBeCloseTo(interval, 6);
    expect(rates.queriesPerSecond).toBeCloseTo((after.totalQueryCount - before!.totalQueryCount) / interval, 6);
    expect(rates.queriesPerSecond).toBeGreaterThan(0);
    expect(rates.xactsPerSecond).toBeGreaterThan(0);
    expect(rates.receivedBytesPerSecond).toBeGreaterThan(0);
    expect(rates.sentBytesPerSecond).toBeGreaterThan(0);
    // Each query sleeps 1 ms on the server.
    expect(rates.avgQuerySeconds).toBeGreaterThanOrEqual(0.001);
    expect(rates.avgQuerySeconds).toBeLessThan(1);
    expect(after.totalQuerySeconds).toBeGreaterThan(before!.totalQuerySeconds);
    await client.end();
  });

  it('is unsupported (config) when no PgBouncer is configured', async () => {
    const result = await probeResult(pgbouncerProbe, dsn);
    expect(result.status).toBe('unsupported');
    if (result.status !== 'unsupported') return;
    expect(result.unsupported.kind).toBe('config');
    expect(result.unsupported.fix).toContain('pgbouncer');
    await closeNodes();
  });
});

describe('pgbouncer test harness', () => {
  it('stops idempotently, freeing the port and removing its directory', async () => {
    const other = await startPgBouncer({ backendHost: backend.hostname, backendPort: Number(backend.port || 5432) });
    const probe = new pg.Client({ connectionString: other.adminDsn });
    await probe.connect();
    await probe.query('SHOW VERSION');
    await probe.end();
    await Promise.all([other.stop(), other.stop()]);
    await other.stop();
    expect(existsSync(other.dir)).toBe(false);
    expect(existsSync(`/proc/${other.pid}`)).toBe(false);
    const refused = new pg.Client({ connectionString: other.adminDsn, connectionTimeoutMillis: 2000 });
    await expect(refused.connect()).rejects.toThrow(/ECONNREFUSED/);
  });
});
