// Automatic failover in `pgwarden --watch` (issue 6 item 5), end to end on the shared fixture in
// synchronous mode (p1 primary, s1 and s2 standbys with synchronous_standby_names = 'ANY 1 (...)',
// a real PgBouncer in front), with the real command line and failover.automatic on at the default
// lostAfterSeconds (5):
// - a config reload (SIGHUP's path) starts and stops the loop with failover.automatic;
// (a) the watcher reaches p1 only through a TCP proxy; the test closes the proxy: the watcher sees p1
//     unreachable for longer than lostAfter, the standbys still stream from it, so it logs that it
//     does not fail over, and both standbys are still in recovery;
// (b) kill -9 of p1 while a client loop writes through PgBouncer: a standby accepts writes (the time
//     is printed; bounded generously), every acknowledged row is on it, PgBouncer points at it, the
//     other standby follows it, and each step raised a critical `failover` alert; acknowledging the
//     outcome alert re-arms automatic failover (it was held off); then p1 restarts
//     (writable on the old timeline): the watcher fences it and it rejoins as a standby of the new
//     primary, receiving what is written there.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { probeIds } from '../../src/probes/index.js';
import { waitFor, type TestCluster } from '../support/cluster.js';
import { pgwarden } from '../support/cli.js';
import { createFailoverCluster, killDashNine, pgbouncerState, queryDsn, roleOf, type ConfigJson, type FailoverCluster } from '../support/failover-cluster.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { alertEvents, parseEvents, spawnWatch, startWatcher, stopWatch, type WatchProcess } from '../support/watch.js';

let fixture: FailoverCluster;
let proxy: TcpProxy;
let work: string;
let watch: WatchProcess | undefined;

beforeAll(async () => {
  fixture = await createFailoverCluster({ name: 'af', synchronous: true, failover: { automatic: true } });
  work = await mkdtemp(join(tmpdir(), 'pgwarden-auto-failover-'));
  await fixture.node('p1').sql('create table acked (id bigserial primary key, at timestamptz not null default now())');
  proxy = await startTcpProxy({ host: fixture.node('p1').host, port: fixture.node('p1').port });
});

afterAll(async () => {
  await stopWatch(watch);
  await proxy?.close();
  await fixture?.cleanup();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

/** A variant of the fixture's config with its own state directory (or the one named) and any change. */
function writeConfig(name: string, change: (config: ConfigJson) => void = () => undefined, state = name): Promise<string> {
  return fixture.writeConfig(name, (config) => {
    change(config);
    (config as ConfigJson & { alerting: unknown }).alerting = { state_dir: join(work, `${state}-state`) };
  });
}

function logLine(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  return waitFor(`a watcher log line matching ${String(pattern)}`, async () => watch?.stderr.find((line) => pattern.test(line)), { timeoutMs });
}

async function inRecovery(cluster: TestCluster): Promise<boolean> {
  return (await cluster.sql('select pg_is_in_recovery() as r'))[0]?.['r'] === true;
}

/** A client inserting one row at a time through PgBouncer, reconnecting after errors; remembers the acknowledged ids. */
function writeLoop(dsn: string): { acked: number[]; errors: () => number; stop: () => Promise<void> } {
  const acked: number[] = [];
  let errors = 0;
  let stopped = false;
  const loop = (async () => {
    let client: pg.Client | undefined;
    while (!stopped) {
      try {
        if (client === undefined) {
          client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 2000 });
          client.on('error', () => undefined);
          await client.connect();
        }
        const result = await client.query<{ id: string }>('insert into acked default values returning id');
        acked.push(Number(result.rows[0]?.id));
      } catch {
        errors += 1;
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    await client?.end().catch(() => undefined);
  })();
  return {
    acked,
    errors: () => errors,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

describe('automatic failover', () => {
  it('starts and stops with failover.automatic on a config reload', async () => {
    const off = await writeConfig('reload-off', (c) => void (c.clusters[0]!.failover = { automatic: false }), 'reload');
    const on = await writeConfig('reload-on', () => undefined, 'reload');
    const load = (file: string) => (): Config => loadConfig({ configFile: file, dsn: undefined, knownProbes: probeIds });
    const run = await startWatcher(load(off)());
    try {
      expect(await run.watcher.reload(load(on))).toBe(true);
      expect(run.logs).toContain(`config reloaded from ${on}: automatic failover on for main`);
      await waitFor('the loop to find the primary', async () => run.logs.includes('main: automatic failover: p1 is the primary'));
      expect(await run.watcher.reload(load(off))).toBe(true);
      expect(run.logs).toContain(`config reloaded from ${off}: automatic failover off for main`);
      expect(run.logs.filter((line) => line.startsWith('main: automatic failover: on ('))).toHaveLength(1);
    } finally {
      await run.watcher.stop();
    }
  });

  it('does not fail over when only the watcher is cut off from the primary: the standbys still stream', async () => {
    const p1 = fixture.node('p1');
    const config = await writeConfig('proxied', (c) => {
      const node = c.clusters[0]!.nodes[0]!;
      node.dsn = node.dsn.replace(`:${p1.port}/`, `:${proxy.port}/`);
    });
    watch = spawnWatch(config);
    await logLine(/main: automatic failover: on \(/);
    await logLine(/main: automatic failover: p1 is the primary/);
    const closedAt = Date.now();
    await proxy.close();
    const line = await logLine(/main: automatic failover: not failing over: /, 30_000);
    const waited = (Date.now() - closedAt) / 1000;
    expect(line).toContain('still stream WAL from it');
    expect(line).toContain('only the watcher is cut off');
    const seen = Number(/has not reached p1 for ([\d.]+) s/.exec(line)?.[1]);
    expect(seen).toBeGreaterThanOrEqual(5);
    console.log(`watcher cut off from p1: it logged "not failing over" ${waited.toFixed(1)} s after the proxy closed (unreachable for ${seen} s)`);
    // At the moment it decided: no promotion, nothing declared, the standbys still streaming from p1.
    expect(await inRecovery(fixture.node('s1'))).toBe(true);
    expect(await inRecovery(fixture.node('s2'))).toBe(true);
    expect(await inRecovery(p1)).toBe(false);
    expect(watch.stderr.filter((one) => /p1 declared lost|promoting /.test(one))).toEqual([]);
    expect(alertEvents(watch.stdout, { check: 'failover' })).toEqual([]);
    expect((await roleOf(p1)).streamingTo).toEqual(['s1', 's2']);
    // Reopened: the watcher reaches p1 again.
    await proxy.open();
    await logLine(/main: automatic failover: p1 answers again/);
    await stopWatch(watch);
    watch = undefined;
  }, 90_000);

  it('fails over on kill -9 of the primary with no acknowledged row lost, then fences and rejoins the old primary', async () => {
    const p1 = fixture.node('p1');
    const config = await writeConfig('direct');
    watch = spawnWatch(config);
    await logLine(/main: automatic failover: p1 is the primary/);
    const writer = writeLoop(fixture.appDsn());
    await waitFor('rows acknowledged through PgBouncer', async () => writer.acked.length >= 100, { timeoutMs: 30_000 });

    await killDashNine(p1);
    const killedAt = Date.now();
    const standbys = [fixture.node('s1'), fixture.node('s2')];
    // The new primary: the standby that leaves recovery and commits a write (synchronous: once the other follows it).
    const promoted = await waitFor('a standby to accept writes', async () => {
      for (const standby of standbys) {
        const [row] = await standby.sql('select pg_is_in_recovery() as r').catch(() => [] as Record<string, unknown>[]);
        if (row?.['r'] === false) return standby;
      }
      return undefined;
    }, { timeoutMs: 60_000, intervalMs: 50 });
    const leftRecoveryS = (Date.now() - killedAt) / 1000;
    await promoted.sql('insert into acked default values');
    const writableS = (Date.now() - killedAt) / 1000;
    const newName = promoted === standbys[0] ? 's1' : 's2';
    const other = promoted === standbys[0] ? standbys[1]! : standbys[0]!;
    console.log(`kill -9 of p1 → ${newName} out of recovery after ${leftRecoveryS.toFixed(1)} s, a write committed on it after ${writableS.toFixed(1)} s (synchronous: the other standby follows first)`);
    expect(writableS).toBeLessThan(60);

    const done = await logLine(/main: automatic failover: automatic failover done: /, 60_000);
    expect(done).toContain(`${newName} is the primary (timeline 2)`);
    console.log(`watcher: ${done}`);
    // Writes go on through PgBouncer, now to the new primary.
    const before = writer.acked.length;
    await waitFor('rows acknowledged after the failover', async () => writer.acked.length >= before + 50, { timeoutMs: 60_000 });
    await writer.stop();
    const onNew = new Set((await promoted.sql('select id from acked')).map((row) => Number(row['id'])));
    const lost = writer.acked.filter((id) => !onNew.has(id));
    console.log(`${writer.acked.length} rows acknowledged through PgBouncer (${writer.errors()} client errors during the failover); ${lost.length} missing on ${newName}`);
    expect(lost).toEqual([]);
    const state = await pgbouncerState(fixture.bouncer!);
    expect(state.paused).not.toBe(true);
    expect(state.databases['app']).toMatchObject({ port: promoted.port, paused: 0 });
    expect((await queryDsn(fixture.appDsn(), 'select inet_server_port() as port'))[0]).toEqual({ port: promoted.port });
    await waitFor(`the other standby to follow ${newName}`, async () => (await roleOf(other)).upstreamPort === promoted.port);

    // Each step a critical alert of the failover check, and an NDJSON event.
    const firing = await waitFor('the failover alerts', async () => {
      const events = alertEvents(watch!.stdout, { check: 'failover', kind: 'firing', cluster: 'main' });
      const subjects = new Set(events.map((event) => event['subject']));
      return subjects.has('primary lost') && subjects.has('promotion') && subjects.has('outcome') ? events : undefined;
    });
    expect(firing.every((event) => event['severity'] === 'critical' && event['node'] === '*')).toBe(true);
    const steps = parseEvents(watch.stdout).filter((event) => event['type'] === 'failover').map((event) => event['step']);
    expect(steps).toEqual(['declared', 'promoting', 'done']);
    // Held off until a human acknowledges the outcome.
    expect(done).toContain('no second automatic failover until this alert is acknowledged');
    const ack = await pgwarden(['alerts', 'ack', 'main/*/failover/outcome', '--config', config]);
    expect(ack.stdout + ack.stderr).toContain('applied by the watcher');
    await logLine(/main: automatic failover: the failover alert was acknowledged: automatic failover is armed again/);

    // The old primary comes back writable on timeline 1: fenced and rejoined as a standby.
    await p1.start().catch((error: unknown) => console.log(`p1's start raced with its fencing: ${String(error)}`));
    const rejoined = await logLine(/main: automatic failover: p1 was fenced and rejoined as a standby/, 180_000);
    console.log(`watcher: ${rejoined}`);
    await waitFor(`p1 to stream from ${newName}`, async () => {
      const role = await roleOf(p1);
      return role.inRecovery && role.upstreamPort === promoted.port;
    }, { timeoutMs: 60_000 });
    const [row] = await promoted.sql('insert into acked default values returning id');
    const id = Number(row?.['id']);
    await waitFor('the new row on p1', async () => (await p1.sql(`select 1 from acked where id = ${id}`)).length === 1);
    expect(await inRecovery(p1)).toBe(true);
    const fencing = await waitFor('the fencing alert', async () => alertEvents(watch!.stdout, { check: 'failover', kind: 'firing', subject: 'fencing p1' })[0]);
    expect(fencing['severity']).toBe('critical');
    expect(parseEvents(watch.stdout).filter((event) => event['type'] === 'failover' && event['subject'] === 'fencing p1').map((event) => event['step'])).toEqual(['fencing', 'fenced', 'rejoined']);
    // Never two primaries at the end: p1 and the other standby in recovery.
    expect(await inRecovery(other)).toBe(true);
  }, 300_000);
});
