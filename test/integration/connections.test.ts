import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { connectionsProbe } from '../../src/probes/connections.js';
import type { Breakdown, ConnectionsSnapshot } from '../../src/probes/connections.js';
import { locksProbe } from '../../src/probes/locks.js';
import { waitFor } from '../support/cluster.js';
import { closeNodes, nodeFor, probeOnce } from '../support/probe.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const app = `pgw-conn-${suffix}`;
// Named like pgwarden's own sessions, so they must be counted as pgwarden's.
const ownApp = `pgwarden-conntest-${suffix}`;
const monitorRole = `pgw_mon_${suffix}`;

let admin: pg.Client;
let settings: { max: number; reserved: number };

function count(breakdown: Breakdown, name: string | null): number {
  return breakdown.entries.find((entry) => entry.name === name)?.count ?? 0;
}

function total(breakdown: Breakdown): number {
  return breakdown.entries.reduce((sum, entry) => sum + entry.count, breakdown.otherCount);
}

/** Everything that must hold in any snapshot, whatever else runs on the server. */
function expectConsistent(snapshot: ConnectionsSnapshot): void {
  for (const breakdown of [snapshot.byState, snapshot.byDatabase, snapshot.byUser, snapshot.byApplication]) {
    expect(total(breakdown)).toBe(snapshot.clientBackends);
    expect(breakdown.otherCount).toBeGreaterThanOrEqual(0);
  }
  expect(snapshot.byBackendType.find((entry) => entry.name === 'client backend')?.count).toBe(snapshot.clientBackends);
  const processes = snapshot.byBackendType.reduce((sum, entry) => sum + entry.count, 0);
  expect(snapshot.clientBackends + snapshot.walSenders + snapshot.autovacuumWorkers + snapshot.backgroundWorkers + snapshot.otherProcesses).toBe(processes);
  expect(snapshot.otherProcesses).toBeGreaterThanOrEqual(2); // at least the checkpointer and the background writer
  expect(snapshot.maxConnections).toBe(settings.max);
  expect(snapshot.superuserReservedConnections).toBe(settings.reserved);
  expect(snapshot.reservedConnections).toBeNull(); // the tests run on 15
  expect(snapshot.reservedSlots).toBe(settings.reserved);
  expect(snapshot.usableSlots).toBe(settings.max - settings.reserved);
  expect(snapshot.usedSlots).toBe(snapshot.clientBackends); // walsenders have their own slots from 12
  expect(snapshot.usedFraction).toBeCloseTo(snapshot.clientBackends / (settings.max - settings.reserved), 10);
  expect(snapshot.slotsLeft).toBe(Math.max(0, settings.max - settings.reserved - snapshot.clientBackends));
}

beforeAll(async () => {
  admin = await openSession(dsn, `${app}-admin`);
  const row = await admin.query<{ max: number; reserved: number }>(
    "select current_setting('max_connections')::int as max, current_setting('superuser_reserved_connections')::int as reserved",
  );
  settings = row.rows[0] ?? { max: -1, reserved: -1 };
  // Five sessions of one application: three idle, two idle in a transaction.
  for (let i = 0; i < 5; i++) {
    const client = await openSession(dsn, app);
    if (i < 2) await client.query('begin; select 1');
  }
  for (let i = 0; i < 2; i++) await openSession(dsn, ownApp);
  await admin.query(`create role ${monitorRole} login in role pg_monitor`);
});

afterAll(async () => {
  await closeNodes();
  await admin.query(`drop role if exists ${monitorRole}`);
  await closeAll();
});

describe('connections probe', () => {
  it('counts client backends by application, state, database and user, with consistent slots', async () => {
    const snapshot = await probeOnce(connectionsProbe, dsn);
    expectConsistent(snapshot);
    expect(snapshot.byApplication.entries.find((entry) => entry.name === app)).toEqual({ name: app, count: 5, pgwarden: 0 });
    expect(count(snapshot.byState, 'idle in transaction')).toBeGreaterThanOrEqual(2);
    expect(count(snapshot.byState, 'idle')).toBeGreaterThanOrEqual(3 + 2);
    // The probe's own session runs the query.
    expect(count(snapshot.byState, 'active')).toBeGreaterThanOrEqual(1);
    expect(count(snapshot.byDatabase, 'test')).toBeGreaterThanOrEqual(5 + 2 + 2);
    expect(count(snapshot.byUser, 'postgres')).toBeGreaterThanOrEqual(5 + 2 + 2);
    expect(snapshot.clientBackends).toBeGreaterThanOrEqual(5 + 2 + 2);
    expect(snapshot.usedFraction).toBeGreaterThan(0);
  });

  it("counts pgwarden's own sessions in the totals and reports them", async () => {
    const snapshot = await probeOnce(connectionsProbe, dsn);
    expect(snapshot.byApplication.entries.find((entry) => entry.name === ownApp)).toEqual({ name: ownApp, count: 2, pgwarden: 2 });
    // Two named like pgwarden plus the probe's own connection.
    expect(snapshot.pgwardenSessions).toBeGreaterThanOrEqual(3);
    expect(snapshot.byApplication.entries.find((entry) => entry.name === 'pgwarden')?.pgwarden).toBeGreaterThanOrEqual(1);
    expect(snapshot.byBackendType.find((entry) => entry.name === 'client backend')?.pgwarden).toBe(snapshot.pgwardenSessions);
    expect(snapshot.clientBackends).toBeGreaterThan(snapshot.pgwardenSessions);
  });

  it('sees a new session appear and leave', async () => {
    const extraApp = `${app}-extra`;
    const node = nodeFor(dsn);
    const extra = await openSession(dsn, extraApp);
    const seen = await probeOnce(connectionsProbe, dsn, { node });
    expect(count(seen.byApplication, extraApp)).toBe(1);
    await admin.query('select pg_terminate_backend($1)', [await backendPid(extra)]);
    const gone = await waitFor('the extra session gone', async () => {
      const snapshot = await probeOnce(connectionsProbe, dsn, { node });
      return count(snapshot.byApplication, extraApp) === 0 ? snapshot : undefined;
    });
    expectConsistent(gone);
  });

  it('runs both probes as a role that is only a member of pg_monitor', async () => {
    const monitorDsn = dsn.replace('postgres@', `${monitorRole}@`);
    const node = nodeFor(monitorDsn);
    const snapshot = await probeOnce(connectionsProbe, monitorDsn, { node });
    expectConsistent(snapshot);
    expect(count(snapshot.byApplication, app)).toBe(5);
    expect(count(snapshot.byState, 'idle in transaction')).toBeGreaterThanOrEqual(2);
    expect(count(snapshot.byUser, monitorRole)).toBe(1);
    expect(snapshot.byUser.entries.find((entry) => entry.name === monitorRole)?.pgwarden).toBe(1);
    const locks = await probeOnce(locksProbe, monitorDsn, { node });
    expect(Array.isArray(locks.waiters)).toBe(true);
    expect(locks.rootBlockers.every((blocker) => blocker.waitingBehind >= 1)).toBe(true);
  });
});
