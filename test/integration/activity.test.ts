import { afterAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { activityProbe } from '../../src/probes/activity.js';
import { serverProbe } from '../../src/probes/server.js';
import { closeNodes, probeOnce, probeResult } from '../support/probe.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const clients: pg.Client[] = [];

async function session(application: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: dsn, application_name: application });
  await client.connect();
  clients.push(client);
  return client;
}

afterAll(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  await closeNodes();
});

describe('activity probe', () => {
  it('sees an idle-in-transaction session, its age and xmin, and hides its own sessions', async () => {
    const idle = await session('test-idle-in-xact');
    await idle.query("begin; select txid_current(); select pg_sleep(0.2)");
    const pidRow = await idle.query<{ pid: number }>('select pg_backend_pid() as pid');
    const pid = pidRow.rows[0]?.pid;

    const snapshot = await probeOnce(activityProbe, dsn);
    const found = snapshot.sessions.find((s) => s.pid === pid);
    expect(found).toMatchObject({ state: 'idle in transaction', application: 'test-idle-in-xact', database: 'test', user: 'postgres', client: '127.0.0.1' });
    expect(found?.xactSeconds).toBeGreaterThanOrEqual(0.2);
    expect(found?.stateSeconds).toBeGreaterThanOrEqual(0);
    expect(found?.query).toBe('select pg_backend_pid() as pid');
    expect(snapshot.sessions.some((s) => s.application.startsWith('pgwarden'))).toBe(false);
    await idle.query('rollback');
  });

  it('sees a long query as active with its runtime', async () => {
    const busy = await session('test-long-query');
    const running = busy.query('select pg_sleep(30)').catch(() => undefined);
    const watcher = await session('test-watcher');
    let snapshot = await probeOnce(activityProbe, dsn);
    for (let i = 0; i < 50 && !snapshot.sessions.some((s) => s.application === 'test-long-query' && s.state === 'active'); i++) {
      await watcher.query('select pg_sleep(0.05)');
      snapshot = await probeOnce(activityProbe, dsn);
    }
    const long = snapshot.sessions.find((s) => s.application === 'test-long-query');
    expect(long).toMatchObject({ state: 'active', waitEventType: 'Timeout', waitEvent: 'PgSleep', query: 'select pg_sleep(30)' });
    expect(long?.querySeconds).not.toBeNull();
    await watcher.query('select pg_cancel_backend(pid) from pg_stat_activity where application_name = $1', ['test-long-query']);
    await running;
  });
});

describe('server probe', () => {
  it('reports version, role, timeline and key settings', async () => {
    const snapshot = await probeOnce(serverProbe, dsn);
    expect(snapshot.versionNum).toBeGreaterThanOrEqual(150000);
    expect(snapshot.role).toBe('primary');
    expect(snapshot.timeline).toBeGreaterThanOrEqual(1);
    expect(snapshot.maxConnections).toBeGreaterThan(0);
    expect(snapshot.settings.find((s) => s.name === 'shared_buffers')?.unit).toBe('8kB');
    expect(snapshot.uptimeSeconds).toBeGreaterThan(0);
  });

  it('reads pg_settings at most once a minute and carries the settings forward', async () => {
    const first = await probeResult(serverProbe, dsn);
    if (first.status !== 'ok') throw new Error(JSON.stringify(first));
    expect(Object.keys(serverProbe.queries(undefined, { snapshot: first.snapshot, at: first.at }))).toEqual(['server']);
    const second = await probeOnce(serverProbe, dsn, { previous: { snapshot: first.snapshot, at: first.at } });
    expect(second.settingsAt).toEqual(first.snapshot.settingsAt);
    expect(second.settings).toEqual(first.snapshot.settings);
    const stale = { ...first.snapshot, settingsAt: new Date(Date.now() - 61_000) };
    expect(Object.keys(serverProbe.queries(undefined, { snapshot: stale, at: first.at }))).toEqual(['server', 'settings']);
  });
});
