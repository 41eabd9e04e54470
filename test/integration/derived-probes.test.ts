import { afterAll, describe, expect, it } from 'vitest';
import { activityProbe, type ActivitySnapshot } from '../../src/probes/activity.js';
import { connectionsProbe, type ConnectionsSnapshot } from '../../src/probes/connections.js';
import { locksProbe } from '../../src/probes/locks.js';
import { ProbeRunner, type AnyProbe } from '../../src/probes/runner.js';
import { closeNodes, nodeFor } from '../support/probe.js';
import { runProbe } from '../../src/probes/run-probe.js';
import { closeAll, openSession } from '../support/sessions.js';
import { waitFor } from '../support/cluster.js';

const dsn = 'postgresql://postgres@127.0.0.1:5432/test';

afterAll(async () => {
  await closeAll();
  await closeNodes();
});

describe('probes that derive from activity', () => {
  it('count connections from the activity snapshot exactly as their own scan does', async () => {
    const app = `derived-${process.pid}`;
    for (let i = 0; i < 3; i++) await openSession(dsn, app);
    const idle = await openSession(dsn, app);
    await idle.query('begin');
    await idle.query('select 1');
    const node = nodeFor(dsn);
    const targets = { server: node, pgbouncer: undefined };
    const activity = await runProbe(activityProbe, targets, { timeoutMs: 5000, previous: undefined });
    if (activity.status !== 'ok') throw new Error(JSON.stringify(activity));
    const derived = await runProbe(connectionsProbe, targets, { timeoutMs: 5000, previous: undefined, inputs: { activity: activity.snapshot } });
    const scanned = await runProbe(connectionsProbe, targets, { timeoutMs: 5000, previous: undefined });
    if (derived.status !== 'ok' || scanned.status !== 'ok') throw new Error('connections failed');
    const mine = (s: ConnectionsSnapshot): unknown => s.byApplication.entries.find((e) => e.name === app);
    expect(mine(derived.snapshot)).toEqual({ name: app, count: 4, pgwarden: 0 });
    expect(mine(scanned.snapshot)).toEqual(mine(derived.snapshot));
    // The pool behind `node` holds pgwarden sessions: both ways count them (other test files'
    // pgwarden sessions come and go between the two reads, so only their presence is compared).
    expect(derived.snapshot.pgwardenSessions).toBeGreaterThan(0);
    expect(scanned.snapshot.pgwardenSessions).toBeGreaterThan(0);
    expect(derived.snapshot.maxConnections).toBe(scanned.snapshot.maxConnections);
    await idle.query('rollback');
  });

  it('ask nothing of the server for locks when activity shows nobody waiting on a lock', () => {
    const quiet: ActivitySnapshot = { sessions: [], ownSessions: [] };
    expect(locksProbe.queries(undefined, undefined, { activity: quiet })).toEqual({});
    expect(Object.keys(locksProbe.queries(undefined, undefined, {}))).toEqual(['sessions']);
  });

  it('runner: dependents run after activity in the same refresh and still see a lock chain', async () => {
    const table = `derived_lock_${process.pid}`;
    const holder = await openSession(dsn, 'derived-holder');
    await holder.query(`create table if not exists ${table} (id int primary key)`);
    await holder.query(`insert into ${table} values (1) on conflict do nothing`);
    await holder.query('begin');
    await holder.query(`select * from ${table} where id = 1 for update`);
    const waiter = await openSession(dsn, 'derived-waiter');
    const waiting = waiter.query(`select * from ${table} where id = 1 for update`);
    const runner = new ProbeRunner([activityProbe, connectionsProbe, locksProbe] as AnyProbe[], { server: nodeFor(dsn), pgbouncer: undefined }, { refreshMs: 500, timeoutMs: 5000 });
    const locks = await waitFor('the lock wait to show', async () => {
      const result = (await runner.refresh(['activity', 'connections', 'locks'])).get('locks');
      // Other test files make lock waits of their own at the same time: look for ours.
      const mine = result?.status === 'ok' && (result.snapshot as { waiters: { application: string }[] }).waiters.some((w) => w.application === 'derived-waiter');
      return mine ? result.snapshot : undefined;
    });
    expect(locks).toMatchObject({ waiters: expect.arrayContaining([expect.objectContaining({ application: 'derived-waiter' })]) as unknown });
    await holder.query('rollback');
    await waiting;
    await holder.query(`drop table ${table}`);
  });
});
