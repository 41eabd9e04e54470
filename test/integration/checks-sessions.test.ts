// The session and server checks against real situations on a private cluster with
// max_connections = 12: idle transactions, a long query, a held snapshot, a lock tree, deadlocks,
// a full server, a queueing PgBouncer, a restart. Private, because on the shared server other
// tests' sessions would show up in every finding.
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deadlocksCheck } from '../../src/checks/databases.js';
import { connectionsCheck, connectivityCheck, poolerCheck, restartCheck } from '../../src/checks/server.js';
import { idleInTransactionCheck, lockWaitsCheck, longQueryCheck, oldestTransactionCheck } from '../../src/checks/sessions.js';
import { CheckWatch, findingFor, has, severities } from '../support/checks.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { startPgBouncer, type TestPgBouncer } from '../support/pgbouncer.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

let cluster: TestCluster;
let watch: CheckWatch;
const checks = [idleInTransactionCheck, longQueryCheck, oldestTransactionCheck, lockWaitsCheck, deadlocksCheck, connectionsCheck, connectivityCheck, restartCheck];

beforeAll(async () => {
  cluster = await createPrimary({ name: 'checks-sessions', maxConnections: 12 });
  await cluster.sql('create table locked_a (id int primary key); create table locked_b (id int primary key); create table pairs (id int primary key, v int); insert into pairs values (1, 0), (2, 0)');
  // One pooled connection: pgwarden's own slot count is then known (1) in the saturation test.
  watch = new CheckWatch(cluster.dsn(), checks, { poolSize: 1 });
});

afterEach(async () => {
  await closeAll();
});

afterAll(async () => {
  await closeAll();
  await watch.close();
  await destroyAll();
});

async function session(name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = await openSession(cluster.dsn(), `checks-${name}`);
  return { client, pid: await backendPid(client) };
}

/** A statement that is expected to block or run long: its outcome, to await later. */
function pending(client: pg.Client, sql: string): Promise<string> {
  return client.query(sql).then(() => 'done', (error: unknown) => (error instanceof Error ? error.message : String(error)));
}

/** Waits until the session waits for a heavyweight lock. */
async function waitingForLock(pid: number): Promise<void> {
  await waitFor(`pid ${pid} to wait for a lock`, async () => (await cluster.sql(`select 1 from pg_stat_activity where pid = ${pid} and wait_event_type = 'Lock'`)).length === 1);
}

const time = { warningSeconds: 1, criticalSeconds: 3 };

describe('session checks on real sessions', () => {
  it('idle in transaction, a long query and a held repeatable-read snapshot: warning, then critical, then ok once they end', async () => {
    const snapshot = await session('snapshot');
    await snapshot.client.query('begin isolation level repeatable read; select count(*) from pg_class');
    const idle = await session('idle');
    await idle.client.query('begin; select 1');
    const long = await session('long');
    const sleeping = pending(long.client, 'select pg_sleep(60)');

    const warnedIdle = await watch.until(idleInTransactionCheck, time, 'both idle sessions at warning', (f) => has(f, `pid ${idle.pid}`, 'warning') !== undefined && has(f, `pid ${snapshot.pid}`, 'warning') !== undefined);
    const warnedLong = await watch.until(longQueryCheck, time, 'the long query at warning', (f) => has(f, `pid ${long.pid}`, 'warning') !== undefined);
    const warnedOldest = await watch.until(oldestTransactionCheck, time, 'three transactions past the warning', (f) => f[0]?.severity === 'warning' && f[0].context.sessions?.length === 3);

    // Idle in transaction: the two idle sessions, not the active one, each with who and what.
    expect(warnedIdle).toHaveLength(2);
    const idleFinding = findingFor(warnedIdle, `pid ${idle.pid}`);
    expect(idleFinding).toMatchObject({ checkId: 'idle-in-transaction', severity: 'warning', threshold: 1, warningThreshold: 1, unit: 'seconds', runbook: 'docs/alerts.md#idle-in-transaction' });
    expect(idleFinding.value).toBeGreaterThanOrEqual(1);
    expect(idleFinding.value).toBeLessThan(3);
    expect(idleFinding.context.sessions).toEqual([{ pid: idle.pid, user: 'postgres', application: 'checks-idle', client: '127.0.0.1', query: 'begin; select 1' }]);
    expect(idleFinding.message).toMatch(new RegExp(`^pid ${idle.pid} \\(postgres, checks-idle, 127\\.0\\.0\\.1\\) idle in transaction for \\d\\.\\ds \\(warning ≥ 1\\.0s\\)$`));
    expect(idleFinding.context.details?.['database']).toBe('postgres');

    // The long query: active, waiting on its sleep; the idle ones are not long queries.
    expect(warnedLong).toHaveLength(1);
    const longFinding = findingFor(warnedLong, `pid ${long.pid}`);
    expect(longFinding).toMatchObject({ severity: 'warning', threshold: 1, unit: 'seconds' });
    expect(longFinding.context.sessions?.[0]).toEqual({ pid: long.pid, user: 'postgres', application: 'checks-long', client: '127.0.0.1', query: 'select pg_sleep(60)' });
    expect(longFinding.message).toMatch(/running one query for \d\.\ds, waiting on Timeout\/PgSleep \(warning ≥ 1\.0s\)$/);
    expect(longFinding.context.details?.['waitEvent']).toBe('PgSleep');

    // The oldest transaction is the snapshot, opened first; every session over the threshold is listed.
    const oldest = findingFor(warnedOldest, 'cluster');
    expect(oldest.severity).toBe('warning');
    expect(oldest.context.details?.['pid']).toBe(snapshot.pid);
    expect(oldest.context.details?.['backendXminAge']).not.toBeNull();
    expect(oldest.message).toMatch(new RegExp(`^the oldest transaction, pid ${snapshot.pid} \\(postgres, checks-snapshot, 127\\.0\\.0\\.1\\) \\(idle in transaction\\), has been open for`));
    expect(oldest.context.sessions?.map((s) => s.pid).sort()).toEqual([snapshot.pid, idle.pid, long.pid].sort());
    expect(oldest.value).toBeGreaterThanOrEqual(idleFinding.value ?? Infinity);

    const criticalIdle = await watch.until(idleInTransactionCheck, time, 'both idle sessions critical', (f) => f.length === 2 && f.every((x) => x.severity === 'critical'));
    expect(findingFor(criticalIdle, `pid ${idle.pid}`)).toMatchObject({ threshold: 3, warningThreshold: 1 });
    expect(findingFor(criticalIdle, `pid ${idle.pid}`).message).toMatch(/\(critical ≥ 3\.0s\)$/);
    const criticalLong = findingFor(await watch.evaluate(longQueryCheck, time), `pid ${long.pid}`);
    expect(criticalLong).toMatchObject({ severity: 'critical', threshold: 3, warningThreshold: 1 });
    expect(findingFor(await watch.evaluate(oldestTransactionCheck, time), 'cluster')).toMatchObject({ severity: 'critical', threshold: 3 });

    await idle.client.query('rollback');
    await snapshot.client.query('commit');
    await cluster.sql(`select pg_cancel_backend(${long.pid})`);
    expect(await sleeping).toMatch(/canceling statement due to user request/);

    expect(severities(await watch.evaluate(idleInTransactionCheck, time))).toEqual([['ok', 'cluster']]);
    expect(severities(await watch.evaluate(longQueryCheck, time))).toEqual([['ok', 'cluster']]);
    const after = await watch.until(oldestTransactionCheck, time, 'the oldest transaction ok', (f) => f[0]?.severity === 'ok');
    expect(severities(after)).toEqual([['ok', 'cluster']]);
  });

  it('lock waits: a chain with two waiters behind a waiting blocker, warning by wait time, critical by the pile-up, ok once released', async () => {
    const root = await session('lock-root');
    const middle = await session('lock-middle');
    const leafOne = await session('lock-leaf-1');
    const leafTwo = await session('lock-leaf-2');
    await root.client.query('begin; lock table locked_a in share mode');
    // The middle one holds locked_b and then queues for locked_a: a blocker that is itself waiting.
    const middleDone = pending(middle.client, 'begin; lock table locked_b in exclusive mode; lock table locked_a in exclusive mode');
    await waitingForLock(middle.pid);
    const leafOneDone = pending(leafOne.client, 'insert into locked_b values (1)');
    const leafTwoDone = pending(leafTwo.client, 'insert into locked_b values (2)');
    await waitingForLock(leafOne.pid);
    await waitingForLock(leafTwo.pid);

    const lockTime = { warningSeconds: 0.5, criticalSeconds: 600 };
    const warned = await watch.until(lockWaitsCheck, lockTime, 'the lock waits at warning', (f) => has(f, `pid ${root.pid}`, 'warning') !== undefined);
    expect(warned).toHaveLength(1);
    const finding = findingFor(warned, `pid ${root.pid}`);
    expect(finding).toMatchObject({ checkId: 'lock-waits', threshold: 0.5, warningThreshold: 0.5, unit: 'seconds' });
    expect(finding.value).toBeGreaterThanOrEqual(0.5);
    expect(finding.message).toMatch(new RegExp(`^pid ${root.pid} \\(postgres, checks-lock-root\\) blocks 3 sessions; the longest has waited \\S+ \\(warning ≥ 500ms\\)$`));
    expect(finding.context.details).toEqual({ waitingBehind: 3, blockerState: 'idle in transaction' });
    // The blocker first, then everyone behind it, each with their query.
    expect(finding.context.sessions?.[0]).toEqual({ pid: root.pid, user: 'postgres', application: 'checks-lock-root', client: null, query: 'begin; lock table locked_a in share mode' });
    expect(finding.context.sessions?.map((s) => s.pid).sort()).toEqual([root.pid, middle.pid, leafOne.pid, leafTwo.pid].sort());
    const tree = finding.context.lockTree ?? [];
    expect(tree).toHaveLength(4);
    expect(tree[0]).toMatch(new RegExp(`^pid ${root.pid} postgres checks-lock-root idle in transaction, transaction open \\S+: begin; lock table locked_a in share mode$`));
    expect(tree[1]).toMatch(new RegExp(`^  pid ${middle.pid} postgres checks-lock-middle waits \\S+ for ExclusiveLock on public\\.locked_a: begin; lock table locked_b in exclusive mode; lock table locked_a in exclusive mode$`));
    for (const [leaf, id] of [[leafOne, 1], [leafTwo, 2]] as const) {
      expect(tree.slice(2).filter((line) => line.startsWith(`    pid ${leaf.pid} `))).toEqual([
        expect.stringMatching(new RegExp(`^    pid ${leaf.pid} postgres checks-lock-leaf-${id} waits \\S+ for RowExclusiveLock on public\\.locked_b: insert into locked_b values \\(${id}\\)$`)),
      ]);
    }

    // Three sessions behind one blocker is a pile-up once the limit is three.
    const piled = findingFor(await watch.evaluate(lockWaitsCheck, { ...lockTime, criticalWaiters: 3 }), `pid ${root.pid}`);
    expect(piled).toMatchObject({ severity: 'critical', threshold: 600 });
    expect(piled.message).toMatch(/blocks 3 sessions; the longest has waited \S+ \(critical: 3 or more sessions behind one blocker\)$/);

    // The root ends: the middle one gets its locks and, idle in its transaction, blocks the leaves.
    await root.client.query('rollback');
    expect(await middleDone).toBe('done');
    const moved = await watch.until(lockWaitsCheck, { warningSeconds: 0, criticalSeconds: 600 }, 'the middle session as the root', (f) => has(f, `pid ${middle.pid}`, 'warning') !== undefined);
    expect(findingFor(moved, `pid ${middle.pid}`).context.details).toEqual({ waitingBehind: 2, blockerState: 'idle in transaction' });
    await middle.client.query('rollback');
    expect(await leafOneDone).toBe('done');
    expect(await leafTwoDone).toBe('done');
    expect(severities(await watch.evaluate(lockWaitsCheck, lockTime))).toEqual([['ok', 'cluster']]);
  });

  it('deadlocks: one real deadlock is a warning, two within a minute critical over a lowered rate, then none', async () => {
    const deadlocksNow = async (): Promise<number> => Number((await cluster.sql("select deadlocks from pg_stat_database where datname = 'postgres'"))[0]?.['deadlocks']);
    /** Two sessions that take rows 1 and 2 in opposite orders; the deadlock detector cancels one. */
    const deadlock = async (): Promise<string[]> => {
      const x = await session('deadlock-x');
      const y = await session('deadlock-y');
      for (const s of [x, y]) await s.client.query("set deadlock_timeout = '50ms'");
      await x.client.query('begin; update pairs set v = v + 1 where id = 1');
      await y.client.query('begin; update pairs set v = v + 1 where id = 2');
      const xDone = pending(x.client, 'update pairs set v = v + 1 where id = 2');
      await waitingForLock(x.pid);
      const yDone = pending(y.client, 'update pairs set v = v + 1 where id = 1');
      const outcomes = [await xDone, await yDone];
      // Ending the sessions flushes the victim's statistics now.
      await x.client.end();
      await y.client.end();
      return outcomes;
    };

    const before = await deadlocksNow();
    expect(severities(await watch.evaluate(deadlocksCheck))).toEqual([['ok', 'cluster']]);
    expect((await deadlock()).filter((outcome) => outcome === 'deadlock detected')).toHaveLength(1);
    await waitFor('the deadlock counted', async () => (await deadlocksNow()) === before + 1);

    const one = findingFor(await watch.evaluate(deadlocksCheck), 'database postgres');
    expect(one).toMatchObject({ checkId: 'deadlocks', severity: 'warning', value: 1, threshold: 1, warningThreshold: 1, unit: 'deadlocks' });
    // One deadlock a few seconds after the previous evaluation is not "12 per minute": the rate counts at least a minute.
    expect(one.message).toMatch(/^database postgres: 1 deadlock in the last \S+ \(1\.0 per minute\) \(warning ≥ 1\)$/);
    expect(one.context.details?.['totalSinceReset']).toBe(before + 1);

    await deadlock();
    await deadlock();
    await waitFor('both deadlocks counted', async () => (await deadlocksNow()) === before + 3);
    const two = findingFor(await watch.evaluate(deadlocksCheck, { criticalPerMinute: 1 }), 'database postgres');
    expect(two).toMatchObject({ severity: 'critical', value: 2, threshold: 1 });
    expect(two.message).toMatch(/: 2 deadlocks in the last \S+ \(2\.0 per minute\) \(critical > 1 per minute\)$/);

    expect(await watch.evaluate(deadlocksCheck, { criticalPerMinute: 1 })).toEqual([expect.objectContaining({ severity: 'ok', message: 'no deadlock since the previous evaluation' })]);
  });

  it('connection saturation on max_connections = 12: critical when fewer than 5 slots are left, warning at 80 %, critical at 90 %, refusals, ok again', async () => {
    await cluster.sql('create role checks_plain login');
    const fillers: pg.Client[] = [];
    const fill = async (): Promise<void> => {
      fillers.push(await openSession(cluster.dsn(), `checks-filler-${fillers.length + 1}`));
    };
    // 12 − 3 superuser-reserved = 9 usable slots; only pgwarden's one connection is open.
    let finding = findingFor(await watch.evaluate(connectionsCheck), 'cluster');
    expect(finding).toMatchObject({ severity: 'ok', value: 1 / 9 });
    expect(finding.message).toBe('1 of 9 usable connection slots in use (11.1%, 8 left) (warning ≥ 80.0%)');
    expect(finding.context.details).toMatchObject({ byApplication: 'pgwarden 1', maxConnections: 12 });

    for (let i = 0; i < 4; i++) await fill();
    finding = findingFor(await watch.evaluate(connectionsCheck), 'cluster');
    expect(finding).toMatchObject({ severity: 'critical', value: 5 / 9, threshold: 0.9, warningThreshold: 0.8, unit: 'fraction' });
    expect(finding.message).toBe('5 of 9 usable connection slots in use (55.6%, 4 left) (critical: fewer than 5 slots left)');

    // Without the slots-left rule, the fractions decide.
    const byFraction = { criticalSlotsLeft: 0 };
    for (let i = 0; i < 3; i++) await fill();
    finding = findingFor(await watch.evaluate(connectionsCheck, byFraction), 'cluster');
    expect(finding).toMatchObject({ severity: 'warning', value: 8 / 9, threshold: 0.8 });
    expect(finding.message).toBe('8 of 9 usable connection slots in use (88.9%, 1 left) (warning ≥ 80.0%)');
    expect(finding.context.details?.['byState']).toBe('idle 7, active 1');
    await fill();
    finding = findingFor(await watch.evaluate(connectionsCheck, byFraction), 'cluster');
    expect(finding).toMatchObject({ severity: 'critical', value: 1, threshold: 0.9 });
    expect(finding.message).toBe('9 of 9 usable connection slots in use (100.0%, 0 left) (critical ≥ 90.0%)');

    // The server agrees: an ordinary role is refused now.
    await expect(openSession(cluster.dsn('postgres', 'checks_plain'), 'checks-refused')).rejects.toThrow(/too many clients|remaining connection slots are reserved/);

    await Promise.all(fillers.splice(0).map((client) => client.end()));
    const after = await watch.until(connectionsCheck, {}, 'the slots freed', (f) => f[0]?.severity === 'ok' && f[0].value === 1 / 9);
    expect(after[0]?.message).toBe('1 of 9 usable connection slots in use (11.1%, 8 left) (warning ≥ 80.0%)');
  });

  it('pooler: a client waiting behind a pool of one is a warning, critical past the lowered wait, ok once served', async () => {
    let bouncer: TestPgBouncer | undefined;
    let pooled: CheckWatch | undefined;
    try {
      bouncer = await startPgBouncer({ backendHost: cluster.host, backendPort: cluster.port, databases: { checks_pool: 'dbname=postgres' }, poolMode: 'transaction', defaultPoolSize: 1 });
      pooled = new CheckWatch(cluster.dsn(), [poolerCheck], { poolSize: 1, pgbouncerDsn: bouncer.adminDsn });
      const holder = await openSession(bouncer.dsn('checks_pool'), 'checks-pool-holder');
      const waiter = await openSession(bouncer.dsn('checks_pool'), 'checks-pool-waiter');
      expect(await pooled.evaluate(poolerCheck)).toEqual([expect.objectContaining({ severity: 'ok', subject: 'cluster', message: 'no client waiting in 1 pools' })]);

      await holder.query('begin; select 1');
      const served = waiter.query('select 42 as answer');
      const warned = findingFor(await pooled.until(poolerCheck, { criticalMaxWaitSeconds: 1 }, 'a client waiting', (f) => has(f, 'pool checks_pool/postgres', 'warning') !== undefined), 'pool checks_pool/postgres');
      expect(warned.message).toMatch(/^pool checks_pool\/postgres: 1 clients waiting, the oldest for \d+ms, 1 server connections active, 0 idle \(warning ≥ 1 waiting\)$/);
      expect(warned.context.details).toMatchObject({ clientsActive: 1, clientsWaiting: 1, serversActive: 1, serversIdle: 0, poolMode: 'transaction' });

      const critical = findingFor(await pooled.until(poolerCheck, { criticalMaxWaitSeconds: 1 }, 'the wait past 1 s', (f) => has(f, 'pool checks_pool/postgres', 'critical') !== undefined), 'pool checks_pool/postgres');
      expect(critical).toMatchObject({ threshold: 1, unit: 'seconds' });
      expect(critical.value).toBeGreaterThanOrEqual(1);
      expect(critical.message).toMatch(/: 1 clients waiting, the oldest for \d\.\ds, .* \(critical ≥ 1\.0s\)$/);

      await holder.query('commit');
      expect((await served).rows).toEqual([{ answer: 42 }]);
      expect(severities(await pooled.until(poolerCheck, { criticalMaxWaitSeconds: 1 }, 'no client waiting', (f) => f[0]?.severity === 'ok'))).toEqual([['ok', 'cluster']]);
    } finally {
      await closeAll();
      await pooled?.close();
      await bouncer?.stop();
    }
  });

  it('a restart: recent on a fresh cluster, ok past the lowered window, connectivity critical while down, recent again after it', async () => {
    const fresh = await watch.evaluate(restartCheck);
    expect(findingFor(fresh, 'uptime')).toMatchObject({ severity: 'warning', threshold: 600, unit: 'seconds' });
    expect(findingFor(fresh, 'uptime').message).toMatch(/^the server restarted \S+ ago, at \d{4}-\d\d-\d\dT\S+Z \(warning < 10m00s\)$/);
    expect(findingFor(fresh, 'role')).toMatchObject({ severity: 'ok', message: 'primary on timeline 1' });

    const window = { recentSeconds: 5 };
    const settled = await watch.until(restartCheck, window, 'an uptime of 5 s', (f) => has(f, 'uptime', 'ok') !== undefined);
    expect(findingFor(settled, 'uptime').message).toMatch(/^up for \S+ \(warning < 5\.0s\)$/);
    const up = findingFor(await watch.evaluate(connectivityCheck), 'cluster');
    expect(up).toMatchObject({ severity: 'ok', threshold: 1 });
    expect(up.message).toMatch(/^the server answered in \d+ms \(warning ≥ 1\.0s\)$/);

    await cluster.stop('fast');
    const down = findingFor(await watch.until(connectivityCheck, {}, 'the server down', (f) => f[0]?.severity === 'critical'), 'cluster');
    expect(down.message).toMatch(/^the server does not answer: /);
    expect(down.context.details?.['since']).toEqual(expect.any(String));

    await cluster.start();
    const back = await watch.until(connectivityCheck, {}, 'the server back', (f) => f[0]?.severity === 'ok', 40_000);
    expect(severities(back)).toEqual([['ok', 'cluster']]);
    const restarted = await watch.evaluate(restartCheck, window);
    expect(findingFor(restarted, 'uptime')).toMatchObject({ severity: 'warning', threshold: 5 });
    expect(findingFor(restarted, 'uptime').value).toBeLessThan(5);
    // Same role and timeline as before the restart: no role change.
    expect(findingFor(restarted, 'role').severity).toBe('ok');
  });
});
