import { describe, expect, it } from 'vitest';
import type { Row, ServerInfo } from '../../src/db/types.js';
import { connectionsProbe, topEntries } from '../../src/probes/connections.js';
import type { ConnectionsSnapshot } from '../../src/probes/connections.js';

const context = { server: undefined, now: new Date('2024-05-01T12:00:00Z'), previous: undefined };

/** count(*) and sum() arrive from pg as int8/numeric strings. */
function entry(dimension: string, name: string | null, count: number, pgwarden: number, dimensionTotal: number): Row {
  return { dimension, name, count: String(count), pgwarden: String(pgwarden), dimension_total: String(dimensionTotal) };
}

function slots(extra: Partial<Record<string, unknown>> = {}): Row {
  return { max_connections: 100, superuser_reserved_connections: 3, reserved_connections: null, walsenders_apart: true, ...extra };
}

const clients = [
  entry('state', 'idle', 6, 2, 10),
  entry('state', 'active', 2, 1, 10),
  entry('state', 'idle in transaction', 1, 0, 10),
  entry('state', null, 1, 0, 10),
  entry('database', 'app', 8, 3, 10),
  entry('database', 'postgres', 2, 0, 10),
  entry('user', 'alice', 7, 0, 10),
  entry('user', 'pgwarden', 3, 3, 10),
  entry('application', 'web', 5, 0, 10),
  entry('application', 'pgwarden', 3, 3, 10),
  // Two more applications with one session each were beyond the top entries.
];

const processes = [
  entry('backend_type', 'client backend', 10, 3, 25),
  entry('backend_type', 'walsender', 2, 0, 25),
  entry('backend_type', 'autovacuum worker', 3, 0, 25),
  entry('backend_type', 'autovacuum launcher', 1, 0, 25),
  entry('backend_type', 'parallel worker', 4, 0, 25),
  entry('backend_type', 'TimescaleDB Background Worker Scheduler', 1, 0, 25),
  entry('backend_type', 'checkpointer', 1, 0, 25),
  entry('backend_type', 'background writer', 1, 0, 25),
  entry('backend_type', 'walwriter', 1, 0, 25),
  entry('backend_type', 'logical replication launcher', 1, 0, 25),
];

function parse(slotRow: Row, counts: Row[] = [...clients, ...processes]): ConnectionsSnapshot {
  return connectionsProbe.parse({ slots: [slotRow], counts }, context);
}

function server(versionNum: number): ServerInfo {
  return {
    versionNum, version: String(versionNum), inRecovery: false, currentUser: 'u', database: 'd', superuser: false, monitor: true,
    extensions: {}, preloadLibraries: null,
  };
}

describe('connections probe parse', () => {
  it('counts client backends by state, database, user and application, with the rest beyond the top entries', () => {
    const snapshot = parse(slots());
    expect(snapshot.clientBackends).toBe(10);
    expect(snapshot.pgwardenSessions).toBe(3);
    expect(snapshot.byState.entries).toEqual([
      { name: 'idle', count: 6, pgwarden: 2 },
      { name: 'active', count: 2, pgwarden: 1 },
      { name: 'idle in transaction', count: 1, pgwarden: 0 },
      { name: null, count: 1, pgwarden: 0 },
    ]);
    expect(snapshot.byState.otherCount).toBe(0);
    expect(snapshot.byDatabase).toEqual({ entries: [{ name: 'app', count: 8, pgwarden: 3 }, { name: 'postgres', count: 2, pgwarden: 0 }], otherCount: 0 });
    expect(snapshot.byUser.entries.map((e) => e.name)).toEqual(['alice', 'pgwarden']);
    expect(snapshot.byApplication.otherCount).toBe(2);
  });

  it('counts walsenders, autovacuum workers and background workers apart from client backends', () => {
    const snapshot = parse(slots());
    expect(snapshot.walSenders).toBe(2);
    expect(snapshot.autovacuumWorkers).toBe(3);
    // parallel worker, an extension's worker and the logical replication launcher.
    expect(snapshot.backgroundWorkers).toBe(6);
    // autovacuum launcher, checkpointer, background writer, walwriter.
    expect(snapshot.otherProcesses).toBe(4);
    expect(snapshot.byBackendType).toHaveLength(processes.length);
    expect(snapshot.byBackendType[0]).toEqual({ name: 'client backend', count: 10, pgwarden: 3 });
  });

  it('computes usable and used slots against max_connections minus the superuser reserve', () => {
    const snapshot = parse(slots());
    expect(snapshot).toMatchObject({
      maxConnections: 100, superuserReservedConnections: 3, reservedConnections: null, reservedSlots: 3,
      usableSlots: 97, usedSlots: 10, slotsLeft: 87,
    });
    expect(snapshot.usedFraction).toBeCloseTo(10 / 97, 12);
  });

  it('adds reserved_connections from 16', () => {
    const snapshot = parse(slots({ reserved_connections: 5 }));
    expect(snapshot).toMatchObject({ reservedConnections: 5, reservedSlots: 8, usableSlots: 92, slotsLeft: 82 });
  });

  it('counts walsenders against max_connections before 12', () => {
    const snapshot = parse(slots({ walsenders_apart: false }));
    expect(snapshot.usedSlots).toBe(12);
    expect(snapshot.slotsLeft).toBe(85);
    expect(snapshot.clientBackends).toBe(10);
  });

  it('never reports negative slots left when privileged roles use the reserve', () => {
    const snapshot = parse(slots({ max_connections: 10, superuser_reserved_connections: 3 }));
    expect(snapshot.usableSlots).toBe(7);
    expect(snapshot.usedSlots).toBe(10);
    expect(snapshot.slotsLeft).toBe(0);
    expect(snapshot.usedFraction).toBeCloseTo(10 / 7, 12);
  });

  it('reports no fraction when every slot is reserved', () => {
    const snapshot = parse(slots({ max_connections: 3, superuser_reserved_connections: 3 }));
    expect(snapshot.usableSlots).toBe(0);
    expect(snapshot.usedFraction).toBeNull();
  });

  it('handles a server with no client backend rows', () => {
    const snapshot = parse(slots(), [entry('backend_type', 'checkpointer', 1, 0, 1)]);
    expect(snapshot.clientBackends).toBe(0);
    expect(snapshot.byApplication).toEqual({ entries: [], otherCount: 0 });
    expect(snapshot.otherProcesses).toBe(1);
    expect(snapshot.backgroundWorkers).toBe(0);
    expect(snapshot.slotsLeft).toBe(97);
  });

  it('fails loudly without the settings row', () => {
    expect(() => connectionsProbe.parse({ slots: [], counts: clients }, context)).toThrow(/no settings row/);
  });
});

describe('connections probe queries', () => {
  it('reads reserved_connections only from 16 and passes the top-entries limit', () => {
    expect(connectionsProbe.queries(server(160000)).slots?.text).toContain("current_setting('reserved_connections')");
    expect(connectionsProbe.queries(server(150000)).slots?.text).not.toContain("current_setting('reserved_connections')");
    expect(connectionsProbe.queries(server(100000)).counts?.values).toEqual([topEntries]);
  });
});
