import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { processAlive } from '../../src/cluster/local.js';
import { loadConfig } from '../../src/config/load.js';
import { startDemo, type Demo } from '../../src/demo/start.js';
import { demoApplications } from '../../src/demo/workload.js';
import { activityProbe } from '../../src/probes/activity.js';
import { databasesProbe, type DatabasesSnapshot } from '../../src/probes/databases.js';
import { locksProbe, type LocksSnapshot } from '../../src/probes/locks.js';
import { pgbouncerProbe } from '../../src/probes/pgbouncer.js';
import { probeIds } from '../../src/probes/index.js';
import { replicationProbe } from '../../src/probes/replication.js';
import { serverProbe } from '../../src/probes/server.js';
import { statementsProbe } from '../../src/probes/statements.js';
import { tablesProbe } from '../../src/probes/tables.js';
import { waitFor } from '../support/cluster.js';
import { closeNodes, nodeFor, probeOnce } from '../support/probe.js';
import type { PgNode } from '../../src/db/node.js';

const execFileAsync = promisify(execFile);
const DEMO_TIMEOUT = 120_000;

// The demo's directories must be reachable by the postgres OS user the servers run as.
function parentDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgwarden-demo-test-'));
  chmodSync(dir, 0o755);
  return dir;
}

const parents: string[] = [];
const demos: Demo[] = [];
const children: ChildProcess[] = [];
const clients: pg.Client[] = [];

async function sql(dsn: string, text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: dsn, application_name: 'demo-test' });
  client.on('error', () => undefined);
  clients.push(client);
  await client.connect();
  try {
    return (await client.query(text, values)).rows as Record<string, unknown>[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function refusesConnections(port: number): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.end();
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ECONNREFUSED';
  }
}

function portOf(dsn: string | undefined): number {
  const port = Number(new URL(dsn ?? 'postgresql://x').port);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in ${dsn ?? '(none)'}`);
  return port;
}

/** Live (non-zombie) processes whose command line mentions the path. */
async function processesMentioning(path: string): Promise<string[]> {
  const { stdout } = await execFileAsync('ps', ['-eo', 'pid=,stat=,args=']);
  return stdout.split('\n').filter((line) => line.includes(path) && !/^\s*\d+\s+Z/.test(line));
}

/** The pids recorded in the demo's pid files (postmasters and PgBouncer). */
function pidFiles(dir: string): number[] {
  const files = [join(dir, 'primary', 'data', 'postmaster.pid'), join(dir, 'standby', 'data', 'postmaster.pid'), join(dir, 'pgbouncer', 'pgbouncer.pid')];
  return files.filter((file) => existsSync(file)).map((file) => Number.parseInt(readFileSync(file, 'utf8'), 10));
}

async function expectNothingLeft(dir: string, pids: readonly number[], ports: readonly number[]): Promise<void> {
  expect(existsSync(dir)).toBe(false);
  expect(pids.filter((pid) => processAlive(pid))).toEqual([]);
  expect(await processesMentioning(dir)).toEqual([]);
  for (const port of ports) expect(await refusesConnections(port)).toBe(true);
}

/** Safety net when a test failed half-way: kill whatever a demo directory still records, then delete it. */
function killLeftovers(dir: string): void {
  for (const pid of pidFiles(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.allSettled(demos.map((demo) => demo.stop({ immediate: true })));
  await Promise.allSettled(clients.map((client) => client.end()));
  await closeNodes();
  for (const parent of parents) {
    if (!existsSync(parent)) continue;
    for (const entry of readdirSync(parent)) killLeftovers(join(parent, entry));
    rmSync(parent, { recursive: true, force: true });
  }
});

describe('pgwarden demo', () => {
  const parent = parentDir();
  parents.push(parent);
  const progress: string[] = [];
  let demo: Demo;
  // One pool per server for all the polling below: a new pool per poll would exhaust max_connections.
  let primaryNode: PgNode;
  let standbyNode: PgNode;

  it('comes up with a primary, a standby, PgBouncer and a config for them', { timeout: DEMO_TIMEOUT }, async () => {
    const started = performance.now();
    demo = await startDemo({ parentDir: parent, progress: (line) => progress.push(line) });
    demos.push(demo);
    primaryNode = nodeFor(demo.dsns.primary);
    standbyNode = nodeFor(demo.dsns.standby);
    console.log(`demo setup took ${Math.round(performance.now() - started)} ms`);

    expect(demo.dir.startsWith(join(parent, 'pgwarden-demo-'))).toBe(true);
    expect(progress[0]).toMatch(/^creating the primary in /);
    expect(progress).toContainEqual(`starting the primary on port ${portOf(demo.dsns.primary)}…`);
    // CI installs PgBouncer, so the demo must use it.
    expect(demo.notes).toEqual([]);
    expect(demo.dsns.pgbouncer).toMatch(/^postgresql:\/\/postgres@127\.0\.0\.1:\d+\/demo/);
    expect(demo.pids()).toHaveLength(3);

    const cluster = demo.config.clusters[0];
    expect(cluster?.name).toBe('demo');
    expect(cluster?.nodes.map((node) => [node.name, node.connection.port])).toEqual([
      ['primary', portOf(demo.dsns.primary)],
      ['standby', portOf(demo.dsns.standby)],
    ]);
    expect(cluster?.pgbouncer?.connection).toMatchObject({ port: portOf(demo.dsns.pgbouncerAdmin), database: 'pgbouncer' });
    // The file the summary points at loads as the same configuration.
    const fromFile = loadConfig({ configFile: demo.configFile, dsn: undefined, knownProbes: probeIds });
    expect(fromFile.clusters).toEqual(demo.config.clusters);
  });

  it('shows the bloated table: dead tuples kept by the idle transaction, autovacuum off', async () => {
    const table = await waitFor('demo_bloated with its dead tuples counted', async () => {
      const snapshot = await probeOnce(tablesProbe, demo.dsns.primary, { node: primaryNode });
      const found = snapshot.tables.find((t) => t.name === 'demo_bloated');
      return found !== undefined && (found.deadTuples ?? 0) >= 200_000 ? found : undefined;
    });
    expect(table.autovacuumEnabled).toBe(false);
    expect(table.liveTuples).toBe(60_000);
    expect(table.confirmed?.bloatFraction).toBeGreaterThan(0.5);
  });

  it('shows a lock chain: a session blocked by a session that is itself blocked', async () => {
    const snapshot = await waitFor('the lock chain', async () => {
      const locks = await probeOnce(locksProbe, demo.dsns.primary, { node: primaryNode });
      return chainIn(locks);
    });
    expect(snapshot.holder.waitingBehind).toBe(2);
    expect(snapshot.holder.state).toBe('idle in transaction');
    expect(snapshot.waiter.blockedBy).toEqual([snapshot.holder.pid]);
    expect(snapshot.behind.blockedBy).toEqual([snapshot.waiter.pid]);
    expect(snapshot.behind.query).toBe('update demo_lock set n = n + 1 where id = 2');
  });

  it('shows the idle transaction and the slow query in activity, and the slow query in statements', async () => {
    const sessions = await waitFor('the idle transaction and the slow query', async () => {
      const { sessions: all } = await probeOnce(activityProbe, demo.dsns.primary, { node: primaryNode });
      const idle = all.find((s) => s.application === demoApplications.idleInTransaction && s.state === 'idle in transaction');
      const slow = all.find((s) => s.application === demoApplications.slowQuery && s.state === 'active');
      return idle !== undefined && slow !== undefined ? { idle, slow } : undefined;
    });
    expect(sessions.idle.xactSeconds).toBeGreaterThan(0);
    expect(sessions.slow).toMatchObject({ waitEvent: 'PgSleep', query: 'select pg_sleep(1.5)' });

    const slow = await waitFor('pg_sleep(1.5) in pg_stat_statements', async () => {
      const { statements } = await probeOnce(statementsProbe, demo.dsns.primary, { node: primaryNode });
      return statements.find((s) => s.query === 'select pg_sleep($1)' && s.calls >= 1);
    });
    expect(slow.meanExecMs).toBeGreaterThanOrEqual(1400);
  });

  it('keeps writing, so commits per second and replication lag show', async () => {
    // Each poll diffs against the previous one, as the console's refresh does.
    let previous: { snapshot: DatabasesSnapshot; at: Date } | undefined;
    const rate = await waitFor('a commit rate on database demo', async () => {
      const snapshot = await probeOnce(databasesProbe, demo.dsns.primary, previous === undefined ? { node: primaryNode } : { node: primaryNode, previous });
      previous = { snapshot, at: new Date() };
      const commits = snapshot.databases.find((d) => d.name === 'demo')?.commitsPerSecond ?? 0;
      return commits > 1 ? commits : undefined;
    });
    expect(rate).toBeGreaterThan(1);

    const standby = await waitFor('the standby streaming through its slot, with replay lag', async () => {
      const snapshot = await probeOnce(replicationProbe, demo.dsns.primary, { node: primaryNode });
      if (snapshot.role !== 'primary') throw new Error(`primary reports role ${snapshot.role}`);
      const slot = snapshot.slots.find((s) => s.name === 'demo_standby');
      const found = snapshot.standbys.find((s) => s.application === 'standby');
      return slot?.active === true && found?.state === 'streaming' && (found.replayLagSeconds ?? 0) >= 1 ? found : undefined;
    });
    expect(standby.replayBytes).not.toBeNull();

    const fromStandby = await probeOnce(replicationProbe, demo.dsns.standby, { node: standbyNode });
    expect(fromStandby.role).toBe('standby');
    if (fromStandby.role === 'standby') expect(fromStandby.receiver).toMatchObject({ status: 'streaming', slotName: 'demo_standby' });
    expect((await probeOnce(serverProbe, demo.dsns.standby, { node: standbyNode })).role).toBe('standby');
    expect(await sql(demo.dsns.standby, "select current_setting('recovery_min_apply_delay') as delay")).toEqual([{ delay: '3s' }]);
  });

  it('runs queries through PgBouncer, which answers SHOW POOLS', async () => {
    const pool = await waitFor('the demo pool with its client', async () => {
      const snapshot = await probeOnce(pgbouncerProbe, demo.dsns.primary, { node: primaryNode, pgbouncerDsn: demo.dsns.pgbouncerAdmin ?? 'no pgbouncer' });
      const client = snapshot.clients.find((c) => c.applicationName === demoApplications.pooled);
      return client === undefined ? undefined : snapshot.pools.find((p) => p.database === 'demo' && p.user === 'postgres');
    });
    expect(pool.poolMode).toBe('transaction');
    expect(pool.clActive + pool.clWaiting).toBeGreaterThanOrEqual(1);
  });

  it('re-creates the lock chain and the idle transaction after the console terminates them', async () => {
    const before = await waitFor('the lock chain', async () => chainIn(await probeOnce(locksProbe, demo.dsns.primary, { node: primaryNode })));
    const idleBefore = (await sql(demo.dsns.primary, 'select pid from pg_stat_activity where application_name = $1', [demoApplications.idleInTransaction]))[0]?.['pid'];
    expect(typeof idleBefore).toBe('number');
    await sql(demo.dsns.primary, 'select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [[before.holder.pid, idleBefore]]);

    const after = await waitFor('a new lock chain', async () => {
      const chain = chainIn(await probeOnce(locksProbe, demo.dsns.primary, { node: primaryNode }));
      return chain !== undefined && chain.holder.pid !== before.holder.pid ? chain : undefined;
    });
    expect(after.behind.blockedBy).toEqual([after.waiter.pid]);
    await waitFor('a new idle transaction', async () => {
      const rows = await sql(demo.dsns.primary, "select pid from pg_stat_activity where application_name = $1 and state = 'idle in transaction'", [demoApplications.idleInTransaction]);
      return rows.length === 1 && rows[0]?.['pid'] !== idleBefore;
    });

    // Their replacements began after the delete, so the horizon moved past it: VACUUM can now remove the dead rows.
    // The standby's feedback and the workload's own snapshots can hold the horizon a moment longer: VACUUM again until it can.
    const vacuumed = await waitFor('VACUUM to remove the dead rows', async () => {
      await sql(demo.dsns.primary, 'vacuum demo_bloated');
      const table = (await probeOnce(tablesProbe, demo.dsns.primary, { node: primaryNode })).tables.find((t) => t.name === 'demo_bloated');
      return table?.deadTuples === 0 ? table : undefined;
    }, { intervalMs: 500 });
    expect(vacuumed.deadTuples).toBe(0);
  });

  it('stops everything and removes its directory; a forced stop overtakes a graceful one', { timeout: DEMO_TIMEOUT }, async () => {
    const pids = demo.pids();
    expect(pids).toHaveLength(3);
    expect(await processesMentioning(demo.dir)).toHaveLength(3);
    const ports = [portOf(demo.dsns.primary), portOf(demo.dsns.standby), portOf(demo.dsns.pgbouncer)];
    const graceful = demo.stop();
    const forced = demo.stop({ immediate: true });
    await Promise.all([graceful, forced]);
    await expectNothingLeft(demo.dir, pids, ports);
    expect(readdirSync(parent)).toEqual([]);
  });
});

describe('pgwarden demo setup failures', () => {
  it('names a PGWARDEN_PG_BIN without the server programs and creates nothing', async () => {
    const parent = parentDir();
    parents.push(parent);
    await expect(startDemo({ parentDir: parent, env: { ...process.env, PGWARDEN_PG_BIN: '/nonexistent/pg/bin' } }))
      .rejects.toThrow('PGWARDEN_PG_BIN=/nonexistent/pg/bin does not contain the PostgreSQL server programs (initdb, pg_ctl)');
    expect(readdirSync(parent)).toEqual([]);
  });

  it('cleans up the running primary when the standby cannot take its port', { timeout: DEMO_TIMEOUT }, async () => {
    const parent = parentDir();
    parents.push(parent);
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const address = taken.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const progress: string[] = [];
    try {
      const failure = await startDemo({ parentDir: parent, ports: { standby: port }, progress: (line) => progress.push(line) }).then(
        () => new Error('the demo started'),
        (error: unknown) => error as Error,
      );
      expect(failure.message).toBe(`demo setup failed: standby: port ${port} on 127.0.0.1 is already in use`);
      expect((failure as Error & { hint?: string }).hint).toBe('choose another port, or stop the program listening there');
    } finally {
      taken.close();
    }
    // The primary had started before the standby failed.
    const primaryPort = Number(progress.map((line) => /^starting the primary on port (\d+)/.exec(line)?.[1]).find((p) => p !== undefined));
    expect(primaryPort).toBeGreaterThan(0);
    expect(progress.at(-1)).toMatch(/^setup failed, cleaning up /);
    expect(readdirSync(parent)).toEqual([]);
    expect(await processesMentioning(parent)).toEqual([]);
    expect(await refusesConnections(primaryPort)).toBe(true);
  });
});

describe('pgwarden demo from the command line', () => {
  it('stops on SIGINT, removes everything and exits 0', { timeout: DEMO_TIMEOUT }, async () => {
    const parent = parentDir();
    parents.push(parent);
    // dist/ is built by the integration project's globalSetup (test/support/build.ts).
    const child = spawn(process.execPath, ['bin/pgwarden.js', 'demo'], { env: { ...process.env, TMPDIR: parent }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    await waitFor('the demo to print its DSNs', async () => {
      if (child.exitCode !== null) throw new Error(`the demo exited early with ${child.exitCode}:\n${stderr}`);
      return stdout.includes('Press Ctrl-C to stop the demo');
    }, { timeoutMs: 90_000 });
    expect(stdout).toContain('== Locks (postgres@127.0.0.1:');
    expect(stdout).toContain('== Replication (postgres@127.0.0.1:');
    const dir = /^ {2}directory +(\S+)$/m.exec(stdout)?.[1] ?? '';
    expect(dir.startsWith(join(parent, 'pgwarden-demo-'))).toBe(true);
    const dsns = ['primary', 'standby', 'pgbouncer'].map((name) => new RegExp(`^ {2}${name} +(postgresql://\\S+)$`, 'm').exec(stdout)?.[1]);
    const ports = dsns.map((dsn) => portOf(dsn));
    expect(stdout).toContain(`pgwarden show locks --dsn '${dsns[0] ?? ''}'`);
    const pids = pidFiles(dir);
    expect(pids).toHaveLength(3);
    expect(pids.every((pid) => processAlive(pid))).toBe(true);
    expect(stderr).toMatch(/starting the primary on port \d+…/);

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stderr).toContain('SIGINT: stopping the demo');
    // One SIGINT is a graceful stop, even though conf's when-exit re-raises it once.
    expect(stderr).not.toContain('killing');
    expect(stderr).toContain(`demo stopped; ${dir} removed`);
    await expectNothingLeft(dir, pids, ports);
    expect(readdirSync(parent)).toEqual([]);
  });
});

function chainIn(locks: LocksSnapshot): { holder: LocksSnapshot['rootBlockers'][number]; waiter: LocksSnapshot['waiters'][number]; behind: LocksSnapshot['waiters'][number] } | undefined {
  const holder = locks.rootBlockers.find((b) => b.application === demoApplications.lockHolder);
  const waiter = locks.waiters.find((w) => w.application === demoApplications.lockWaiter);
  const behind = locks.waiters.find((w) => w.application === demoApplications.lockWaiterBehind);
  if (holder === undefined || waiter === undefined || behind === undefined) return undefined;
  return waiter.blockedBy.includes(holder.pid) && behind.blockedBy.includes(waiter.pid) ? { holder, waiter, behind } : undefined;
}
