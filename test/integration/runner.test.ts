import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConnection } from '../../src/config/conninfo.js';
import { PgNode } from '../../src/db/node.js';
import { activityProbe } from '../../src/probes/activity.js';
import { ProbeRunner, type AnyProbe } from '../../src/probes/runner.js';
import { serverProbe } from '../../src/probes/server.js';
import { latest, type Probe } from '../../src/probes/types.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';

let cluster: TestCluster;
const nodes: PgNode[] = [];

function node(dsn: string, statementTimeoutMs = 5000): PgNode {
  const created = new PgNode(resolveConnection(dsn, 'test'), { statementTimeoutMs, lockTimeoutMs: 1000 });
  nodes.push(created);
  return created;
}

beforeAll(async () => {
  cluster = await createPrimary({ name: 'runner' });
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  await destroyAll();
});

/** A probe that sleeps on the server and counts how often it really ran. */
function sleepingProbe(seconds: number): Probe<{ runs: number }> & { runs: number } {
  const probe = {
    id: 'server' as const,
    title: 'Sleeper',
    target: 'server' as const,
    cadenceMs: 0,
    minServerVersion: 0,
    runs: 0,
    queries() {
      probe.runs += 1;
      return { sleep: { text: `select pg_sleep(${seconds})` } };
    },
    parse() {
      return { runs: probe.runs };
    },
  };
  return probe;
}

describe('ProbeRunner', () => {
  it('keeps the last good snapshot, marked stale, while the server is down, and reconnects by itself', async () => {
    const target = node(cluster.dsn());
    const runner = new ProbeRunner([serverProbe, activityProbe] as AnyProbe[], { server: target, pgbouncer: undefined }, { refreshMs: 200, timeoutMs: 5000 });
    const first = await runner.refresh(['server', 'activity']);
    const good = first.get('server');
    expect(good?.status).toBe('ok');
    const startedAt = good?.status === 'ok' ? (good.snapshot as { startedAt: Date }).startedAt : undefined;

    await cluster.stop('fast');
    const down = await runner.refresh(['server']);
    const failed = down.get('server');
    expect(failed?.status).toBe('error');
    if (failed?.status !== 'error') throw new Error('unreachable');
    expect(failed.error.message).toMatch(/connection refused|terminat|shut/i);
    const kept = latest(failed);
    expect(kept?.stale).toBe(true);
    expect((kept?.snapshot as { startedAt: Date }).startedAt).toEqual(startedAt);
    expect(target.state).toBe('down');

    await cluster.start();
    const back = await waitFor('the runner to reconnect', async () => {
      const results = await runner.refresh(['server']);
      const result = results.get('server');
      return result?.status === 'ok' ? result : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250 });
    expect((back.snapshot as { startedAt: Date }).startedAt.getTime()).toBeGreaterThan(startedAt?.getTime() ?? 0);
    expect(target.state).toBe('up');
    await runner.stop();
  });

  it('keeps the first rows when a follow-up query fails, and says why', async () => {
    const probe: Probe<{ first: number; followUpError: string | undefined }> = {
      id: 'tables',
      title: 'Follow-up',
      target: 'server',
      cadenceMs: 0,
      minServerVersion: 0,
      queries: () => ({ first: { text: 'select 42 as n' } }),
      followUpOptional: true,
      followUp: () => ({ second: { text: 'select 1/0 as n' } }),
      parse: (rows, context) => ({ first: Number(rows['first']?.[0]?.['n']), followUpError: context.followUpError }),
    };
    const runner = new ProbeRunner([probe], { server: node(cluster.dsn()), pgbouncer: undefined }, { refreshMs: 1000, timeoutMs: 5000 });
    const result = (await runner.refresh(['tables'])).get('tables');
    expect(result?.status).toBe('ok');
    if (result?.status !== 'ok') throw new Error('unreachable');
    expect(result.snapshot).toEqual({ first: 42, followUpError: expect.stringContaining('division by zero') as unknown });
  });

  it('never runs a probe twice at the same time', async () => {
    const probe = sleepingProbe(0.4);
    const runner = new ProbeRunner([probe], { server: node(cluster.dsn()), pgbouncer: undefined }, { refreshMs: 5000, timeoutMs: 5000 });
    await Promise.all([runner.refresh(['server']), runner.refresh(['server']), runner.refresh(['server'])]);
    expect(probe.runs).toBe(1);
    await runner.refresh(['server']);
    expect(probe.runs).toBe(2);
  });

  it('cancels a probe at its timeout on the server and reports it with the fix', async () => {
    const probe = sleepingProbe(30);
    const target = node(cluster.dsn(), 5000);
    const runner = new ProbeRunner([probe], { server: target, pgbouncer: undefined }, {
      refreshMs: 200,
      timeoutMs: 5000,
      settings: { server: { enabled: true, cadenceMs: undefined, timeoutMs: 300 } },
    });
    const started = Date.now();
    const result = (await runner.refresh(['server'])).get('server');
    expect(result?.status).toBe('error');
    if (result?.status !== 'error') throw new Error('unreachable');
    expect(result.error.sqlstate).toBe('57014');
    expect(result.error.hint).toContain('timeout_ms');
    expect(Date.now() - started).toBeLessThan(5000);
    // The server really stopped the query: no pg_sleep(30) left behind.
    const left = await cluster.sql("select count(*)::int as n from pg_stat_activity where query like 'select pg_sleep(30)%' and state = 'active'");
    expect(left[0]?.['n']).toBe(0);
    // The node is not considered down for a slow query.
    expect(target.state).toBe('up');
  });

  it('emits one refresh event per refresh with every result, and backs off after errors', async () => {
    const unreachable = node('postgresql://postgres@127.0.0.1:1/none');
    let attempts = 0;
    const counting = {
      label: unreachable.label,
      query: unreachable.query.bind(unreachable),
      serverInfo: () => {
        attempts += 1;
        return unreachable.serverInfo();
      },
    };
    const runner = new ProbeRunner([serverProbe, activityProbe] as AnyProbe[], { server: counting, pgbouncer: undefined }, { refreshMs: 100, timeoutMs: 1000 });
    const events: number[] = [];
    runner.on('refresh', (results) => events.push(results.size));
    await runner.refresh();
    expect(attempts).toBe(2);
    await runner.refresh();
    expect(events).toEqual([2, 2]);
    // Both probes failed and are backed off: the second refresh did not try again.
    expect(attempts).toBe(2);
    const result = runner.results().get('activity');
    expect(result?.status).toBe('error');
    if (result?.status === 'error') expect(result.error.message).toContain('connection refused');
    // Once the back-off expires they are tried again.
    await waitFor('a retry after the back-off', async () => {
      await runner.refresh();
      return attempts > 2;
    }, { timeoutMs: 5000, intervalMs: 100 });
  });
});
