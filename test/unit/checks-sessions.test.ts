import { describe, expect, it } from 'vitest';
import { connectionsCheck, connectivityCheck, poolerCheck, restartCheck } from '../../src/checks/server.js';
import { idleInTransactionCheck, lockWaitsCheck, longQueryCheck, oldestTransactionCheck } from '../../src/checks/sessions.js';
import type { ActivitySnapshot } from '../../src/probes/activity.js';
import { connectionsFrom, locksSnapshot, noLocksSnapshot, pgbouncerSnapshot, primaryReplication, serverSnapshot, sessions, standbyServerSnapshot } from '../fixtures/snapshots.js';
import { ago, errorResult, fixtureNow, okResults, resultsWith, run, session, stateAfter, summary } from '../fixtures/checks.js';

const activity = (list: ActivitySnapshot['sessions']): ActivitySnapshot => ({ sessions: list, ownSessions: [] });
const serverIn = (durationMs: number) => resultsWith({ server: { status: 'ok', durationMs, snapshot: serverSnapshot, at: fixtureNow } });

describe('connectivity', () => {
  it('ok, warning and critical by round trip; critical with the error when the server does not answer', () => {
    expect(summary(run(connectivityCheck, serverIn(12)))).toEqual([['ok', 'cluster', 'the server answered in 12ms (warning ≥ 1.0s)']]);
    expect(summary(run(connectivityCheck, serverIn(1500)))).toEqual([['warning', 'cluster', 'the server answered in 1.5s (warning ≥ 1.0s)']]);
    const slow = run(connectivityCheck, serverIn(6000))[0];
    expect([slow?.severity, slow?.message, slow?.value, slow?.threshold, slow?.warningThreshold]).toEqual(['critical', 'the server answered in 6.0s (critical ≥ 5.0s)', 6, 5, 1]);
    const down = run(connectivityCheck, resultsWith({ server: errorResult(serverSnapshot) }))[0];
    expect([down?.severity, down?.message]).toEqual(['critical', 'the server does not answer: connection lost: server closed the connection unexpectedly']);
    expect(down?.context.details?.['sqlstate']).toBe('08006');
  });
});

describe('restart / role change', () => {
  it('warns for a recent restart, and for a role change until it is older than the threshold', () => {
    const primary = okResults({ server: serverSnapshot });
    const state = stateAfter(restartCheck, primary);
    expect(summary(run(restartCheck, primary, { previous: state }))).toEqual([
      ['ok', 'uptime', 'up for 3d04h (warning < 10m00s)'],
      ['ok', 'role', 'primary on timeline 1'],
    ]);
    const promoted = okResults({ server: { ...serverSnapshot, timeline: 2 } });
    const after = stateAfter(restartCheck, promoted, state, ago(120));
    expect(summary(run(restartCheck, promoted, { previous: after }))[1]).toEqual(['warning', 'role', 'the role changed from primary on timeline 1 to primary on timeline 2 2m00s ago (warning < 10m00s)']);
    expect(run(restartCheck, promoted, { previous: after, now: new Date(fixtureNow.getTime() + 600_000) })[1]?.severity).toBe('ok');
    const restarted = okResults({ server: standbyServerSnapshot });
    const findings = run(restartCheck, restarted, { previous: state });
    expect(summary(findings)).toEqual([
      ['warning', 'uptime', 'the server restarted 5m00s ago, at 2024-05-01T11:55:00.000Z (warning < 10m00s)'],
      ['warning', 'role', 'the role changed from primary on timeline 1 to standby on timeline 1 just now (warning < 10m00s)'],
    ]);
  });
});

describe('connection saturation', () => {
  const many = (n: number): ActivitySnapshot => activity(Array.from({ length: n }, (_, i) => session(1000 + i, { application: i % 2 === 0 ? 'web' : 'api' })));
  const at = (n: number, max = 100) => okResults({ connections: connectionsFrom(many(n), max) });
  it('ok, warning at 80 %, critical at 90 % or with fewer than 5 slots left', () => {
    expect(summary(run(connectionsCheck, at(50)))).toEqual([['ok', 'cluster', '50 of 97 usable connection slots in use (51.5%, 47 left) (warning ≥ 80.0%)']]);
    expect(summary(run(connectionsCheck, at(80)))).toEqual([['warning', 'cluster', '80 of 97 usable connection slots in use (82.5%, 17 left) (warning ≥ 80.0%)']]);
    expect(summary(run(connectionsCheck, at(88)))).toEqual([['critical', 'cluster', '88 of 97 usable connection slots in use (90.7%, 9 left) (critical ≥ 90.0%)']]);
    expect(summary(run(connectionsCheck, at(18, 24)))).toEqual([['critical', 'cluster', '18 of 21 usable connection slots in use (85.7%, 3 left) (critical: fewer than 5 slots left)']]);
    expect(run(connectionsCheck, at(80))[0]?.context.details?.['byApplication']).toBe('api 40, web 40');
  });
});

describe('pooler', () => {
  it('warns for waiting clients, critical past 30 s of wait, nothing without PgBouncer', () => {
    expect(summary(run(poolerCheck, okResults({ pgbouncer: pgbouncerSnapshot })))).toEqual([
      ['warning', 'pool app/web', 'pool app/web: 5 clients waiting, the oldest for 2.5s, 20 server connections active, 0 idle (warning ≥ 1 waiting)'],
    ]);
    const stuck = { ...pgbouncerSnapshot, pools: pgbouncerSnapshot.pools.map((p) => (p.user === 'web' ? { ...p, maxWaitSeconds: 45 } : p)) };
    expect(summary(run(poolerCheck, okResults({ pgbouncer: stuck })))).toEqual([
      ['critical', 'pool app/web', 'pool app/web: 5 clients waiting, the oldest for 45s, 20 server connections active, 0 idle (critical ≥ 30s)'],
    ]);
    const calm = { ...pgbouncerSnapshot, pools: pgbouncerSnapshot.pools.map((p) => ({ ...p, clWaiting: 0, maxWaitSeconds: 0 })) };
    expect(summary(run(poolerCheck, okResults({ pgbouncer: calm })))).toEqual([['ok', 'cluster', 'no client waiting in 2 pools']]);
    const none = resultsWith({ pgbouncer: { status: 'unsupported', unsupported: { kind: 'config', reason: 'no PgBouncer is configured', fix: 'set it' } } });
    expect(run(poolerCheck, none)).toEqual([]);
  });
});

describe('idle in transaction', () => {
  it('one finding per session past the warning, with the session as context', () => {
    const findings = run(idleInTransactionCheck, okResults({ activity: activity(sessions) }));
    expect(summary(findings)).toEqual([
      ['critical', 'pid 101', 'pid 101 (alice, orders-api, 10.0.0.11) idle in transaction for 20m00s (critical ≥ 15m00s)'],
      ['warning', 'pid 102', 'pid 102 (bob, billing, 10.0.0.12) idle in transaction for 7m00s (warning ≥ 5m00s)'],
    ]);
    expect(findings[0]?.context.sessions).toEqual([{ pid: 101, user: 'alice', application: 'orders-api', client: '10.0.0.11', query: "update orders set status = 'paid' where id = 42" }]);
    expect([findings[0]?.value, findings[0]?.threshold, findings[0]?.warningThreshold, findings[0]?.unit]).toEqual([1200, 900, 300, 'seconds']);
    expect(summary(run(idleInTransactionCheck, okResults({ activity: activity(sessions.filter((s) => s.pid > 102)) })))).toEqual([
      ['ok', 'cluster', 'no session idle in transaction for 5m00s or more (longest 30s)'],
    ]);
  });
});

describe('long-running query', () => {
  it('client backends only; waiting ones say on what', () => {
    expect(summary(run(longQueryCheck, okResults({ activity: activity(sessions) })))).toEqual([
      ['critical', 'pid 301', 'pid 301 (etl, etl-loader, 10.0.0.20) running one query for 40m00s, waiting on IO/DataFileRead (critical ≥ 30m00s)'],
      ['warning', 'pid 302', 'pid 302 (analyst, psql, local) running one query for 6m40s (warning ≥ 5m00s)'],
    ]);
    expect(summary(run(longQueryCheck, okResults({ activity: activity([session(7, { state: 'active', querySeconds: 12 })]) })))).toEqual([
      ['ok', 'cluster', 'no session running one query for 5m00s or more (longest 12s)'],
    ]);
  });
});

describe('oldest transaction', () => {
  it('the oldest open transaction, with slots holding an xmin in the context', () => {
    const withXmin = { ...primaryReplication, slots: primaryReplication.slots.map((s) => (s.name === 'old_replica' ? { ...s, xminAge: 123_456 } : s)) };
    const findings = run(oldestTransactionCheck, okResults({ activity: activity(sessions), replication: withXmin }));
    expect(summary(findings)).toEqual([
      ['warning', 'cluster', 'the oldest transaction, pid 301 (etl, etl-loader, 10.0.0.20) (active), has been open for 40m00s (warning ≥ 15m00s)'],
    ]);
    expect(findings[0]?.context.sessions?.map((s) => s.pid)).toEqual([301, 101]);
    expect(findings[0]?.context.details?.['slotXminAges']).toBe('old_replica 123,456');
    const old = session(9, { state: 'idle in transaction', xactSeconds: 4000 });
    expect(run(oldestTransactionCheck, okResults({ activity: activity([old]) }))[0]?.message).toBe('the oldest transaction, pid 9 (web, web-1, 10.0.0.31) (idle in transaction), has been open for 1h06m (critical ≥ 1h00m)');
    expect(summary(run(oldestTransactionCheck, okResults({ activity: activity([session(5)]) })))).toEqual([['ok', 'cluster', 'no open transaction (warning ≥ 15m00s)']]);
  });
});

describe('lock waits', () => {
  it('one finding per root blocker with the lock tree', () => {
    const findings = run(lockWaitsCheck, okResults({ locks: locksSnapshot }));
    expect(summary(findings)).toEqual([
      ['warning', 'pid 101', 'pid 101 (alice, orders-api) blocks 3 sessions; the longest has waited 1m35s (warning ≥ 1m00s)'],
      ['warning', 'pid 102', 'pid 102 (bob, billing) blocks 2 sessions; the longest has waited 1m35s (warning ≥ 1m00s)'],
    ]);
    expect(findings[0]?.context.lockTree).toEqual([
      "pid 101 alice orders-api idle in transaction, transaction open 21m00s: update orders set status = 'paid' where id = 42",
      '  pid 201 carol migrate waits 1m35s for AccessExclusiveLock on public.orders: alter table orders add column note text',
      '    pid 202 dave reporting waits 1m00s for AccessShareLock on public.orders: select count(*) from orders',
      "  pid 203 web orders-api waits 30s for ShareLock on transactionid: update orders set status = 'shipped' where id = 42",
    ]);
    expect(findings[0]?.context.sessions?.map((s) => s.pid)).toEqual([101, 201, 202, 203]);
  });

  it('critical past 5 minutes or with 10 sessions behind one blocker; ok when nobody waits long', () => {
    const long = { ...locksSnapshot, waiters: locksSnapshot.waiters.map((w) => (w.pid === 203 ? { ...w, waitSeconds: 400 } : w)) };
    expect(summary(run(lockWaitsCheck, okResults({ locks: long })))[0]).toEqual(['critical', 'pid 101', 'pid 101 (alice, orders-api) blocks 3 sessions; the longest has waited 6m40s (critical ≥ 5m00s)']);
    const pile = { ...locksSnapshot, rootBlockers: locksSnapshot.rootBlockers.map((b) => (b.pid === 101 ? { ...b, waitingBehind: 12 } : b)) };
    expect(summary(run(lockWaitsCheck, okResults({ locks: pile })))[0]).toEqual(['critical', 'pid 101', 'pid 101 (alice, orders-api) blocks 12 sessions; the longest has waited 1m35s (critical: 10 or more sessions behind one blocker)']);
    const short = { ...locksSnapshot, waiters: locksSnapshot.waiters.map((w) => ({ ...w, waitSeconds: 5 })) };
    expect(summary(run(lockWaitsCheck, okResults({ locks: short })))).toEqual([['ok', 'cluster', '3 sessions wait for a lock, none for 1m00s or more']]);
    expect(summary(run(lockWaitsCheck, okResults({ locks: noLocksSnapshot })))).toEqual([['ok', 'cluster', 'no session waits for a lock']]);
  });
});
