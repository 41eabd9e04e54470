import { describe, expect, it } from 'vitest';
import type { Row } from '../../src/db/types.js';
import { pgbouncerProbe, type PgBouncerSnapshot } from '../../src/probes/pgbouncer.js';
import type { RowSets } from '../../src/probes/types.js';

const now = new Date('2024-05-01T10:00:10Z');

// When each parsed snapshot was taken, as the runner would remember it.
const takenAt = new WeakMap<PgBouncerSnapshot, Date>();

function parse(rows: RowSets, previous?: PgBouncerSnapshot, at: Date = now): PgBouncerSnapshot {
  const snapshot = pgbouncerProbe.parse(rows, { server: undefined, now: at, previous, previousAt: previous === undefined ? undefined : takenAt.get(previous) });
  takenAt.set(snapshot, at);
  return snapshot;
}

// PgBouncer 1.18+: split cancel counters, maxwait_us, application_name; numbers as the driver gives them
// (int4 columns as numbers, SHOW STATS as numeric strings).
const v118: RowSets = {
  pools: [
    {
      database: 'pgbouncer', user: 'pgbouncer', cl_active: 1, cl_waiting: 0, cl_active_cancel_req: 0, cl_waiting_cancel_req: 0,
      sv_active: 0, sv_active_cancel: 0, sv_being_canceled: 0, sv_idle: 0, sv_used: 0, sv_tested: 0, sv_login: 0, maxwait: 0, maxwait_us: 0, pool_mode: 'statement',
    },
    {
      database: 'app', user: 'web', cl_active: 5, cl_waiting: 3, cl_active_cancel_req: 1, cl_waiting_cancel_req: 2,
      sv_active: 4, sv_active_cancel: 0, sv_being_canceled: 0, sv_idle: 1, sv_used: 2, sv_tested: 0, sv_login: 1, maxwait: 2, maxwait_us: 500000, pool_mode: 'transaction',
    },
    {
      database: 'reports', user: 'bi', cl_active: 1, cl_waiting: 1, cl_active_cancel_req: 0, cl_waiting_cancel_req: 0,
      sv_active: 1, sv_active_cancel: 0, sv_being_canceled: 0, sv_idle: 0, sv_used: 0, sv_tested: 0, sv_login: 0, maxwait: 7, maxwait_us: 250, pool_mode: 'session',
    },
  ],
  stats: [
    {
      database: 'app', total_xact_count: '1000', total_query_count: '3000', total_received: '90000000000', total_sent: '200000',
      total_xact_time: '5000000', total_query_time: '3000000', total_wait_time: '1500000', avg_xact_count: '10', avg_query_count: '30',
      avg_recv: '100', avg_sent: '200', avg_xact_time: '5000', avg_query_time: '1000', avg_wait_time: '250',
    },
  ],
  servers: [
    {
      type: 'S', user: 'web', database: 'app', state: 'active', addr: '10.0.0.5', port: 5432, local_addr: '10.0.0.2', local_port: 40000,
      connect_time: '2024-05-01 09:00:00 UTC', request_time: '2024-05-01 09:59:59 UTC', wait: 0, wait_us: 0, close_needed: 0,
      ptr: '0x1001', link: '0x2001', remote_pid: 4242, tls: '', application_name: 'web-1',
    },
    {
      type: 'S', user: 'web', database: 'app', state: 'idle', addr: '10.0.0.5', port: 5432, local_addr: '10.0.0.2', local_port: 40001,
      connect_time: '2024-05-01 09:00:00 UTC', request_time: '1970-01-01 00:00:00 UTC', wait: 0, wait_us: 0, close_needed: 0,
      ptr: '0x1002', link: '', remote_pid: 0, tls: '', application_name: '',
    },
  ],
  clients: [
    {
      type: 'C', user: 'web', database: 'app', state: 'active', addr: '192.168.1.10', port: 51000, local_addr: '10.0.0.2', local_port: 6432,
      connect_time: '2024-05-01 09:30:00 UTC', request_time: '2024-05-01 09:59:59 UTC', wait: 0, wait_us: 0, close_needed: 0,
      ptr: '0x2001', link: '0x1001', remote_pid: 0, tls: 'TLSv1.3/TLS_AES_256_GCM_SHA384', application_name: 'web-1',
    },
    {
      type: 'C', user: 'web', database: 'app', state: 'waiting', addr: 'unix', port: 3131, local_addr: 'unix', local_port: 6432,
      connect_time: '2024-05-01 09:59:58 UTC', request_time: '2024-05-01 09:59:58 UTC', wait: 2, wait_us: 500000, close_needed: 0,
      ptr: '0x2002', link: '', remote_pid: 0, tls: '', application_name: 'web-2',
    },
    {
      type: 'C', user: 'postgres', database: 'pgbouncer', state: 'active', addr: '127.0.0.1', port: 51001, local_addr: '127.0.0.1', local_port: 6432,
      connect_time: '2024-05-01 09:00:00 UTC', request_time: '2024-05-01 10:00:09 UTC', wait: 0, wait_us: 0, close_needed: 0,
      ptr: '0x2003', link: '', remote_pid: 0, tls: '', application_name: 'pgwarden',
    },
  ],
  lists: [
    { list: 'databases', items: 3 },
    { list: 'pools', items: 3 },
    { list: 'used_clients', items: 3 },
  ],
  version: [{ version: 'PgBouncer 1.18.0' }],
};

// PgBouncer 1.17: one cl_cancel_req column, no application_name, everything as strings,
// and NULLs where a newer console would print nothing.
const v117: RowSets = {
  pools: [
    {
      database: 'app', user: 'web', cl_active: '2', cl_waiting: '0', cl_cancel_req: '1', sv_active: '2', sv_idle: '0', sv_used: '0',
      sv_tested: '0', sv_login: '0', maxwait: '0', maxwait_us: '0', pool_mode: 'session',
    },
  ],
  stats: [
    {
      database: 'app', total_xact_count: '10', total_query_count: '20', total_received: '1000', total_sent: '2000',
      total_xact_time: '100', total_query_time: '200', total_wait_time: '0', avg_xact_count: '0', avg_query_count: '0',
      avg_recv: '0', avg_sent: '0', avg_xact_time: '0', avg_query_time: '0', avg_wait_time: '0',
    },
  ],
  servers: [
    {
      type: 'S', user: 'web', database: 'app', state: 'used', addr: null, port: null, local_addr: null, local_port: null,
      connect_time: '2024-05-01 09:00:00 CET', request_time: '2024-05-01 09:00:00 +0200', wait: '0', wait_us: '0', close_needed: '0',
      ptr: '0x3001', link: null, remote_pid: null, tls: null,
    },
  ],
  clients: [],
  lists: [],
  version: [],
};

// PgBouncer 1.7: no maxwait_us, pool_mode, wait or wait_us; SHOW STATS counted requests.
const v17: RowSets = {
  pools: [{ database: 'app', user: 'web', cl_active: 1, cl_waiting: 2, sv_active: 1, sv_idle: 0, sv_used: 0, sv_tested: 0, sv_login: 0, maxwait: 4 }],
  stats: [{ database: 'app', total_requests: '500', total_received: '10', total_sent: '20', total_query_time: '4000000', avg_req: '1', avg_recv: '0', avg_sent: '0', avg_query: '8000' }],
  servers: [],
  clients: [
    {
      type: 'C', user: 'web', database: 'app', state: 'waiting', addr: '127.0.0.1', port: 50000, local_addr: '127.0.0.1', local_port: 6432,
      connect_time: '2024-05-01 09:00:00 UTC', request_time: '2024-05-01 09:00:00 UTC', ptr: '0x4001', link: '', remote_pid: 0,
    },
  ],
};

describe('pgbouncer probe parse', () => {
  it('reads pools with split cancel counters and microsecond waits (1.18)', () => {
    const s = parse(v118);
    expect(s.pools).toHaveLength(3);
    expect(s.pools[1]).toEqual({
      database: 'app', user: 'web', clActive: 5, clWaiting: 3, clCancelReq: 3, svActive: 4, svIdle: 1, svUsed: 2, svTested: 0, svLogin: 1,
      maxWaitSeconds: 2.5, poolMode: 'transaction',
    });
    expect(s.pools[2]?.maxWaitSeconds).toBeCloseTo(7.00025, 9);
    expect(s.version).toBe('PgBouncer 1.18.0');
    expect(s.versionNum).toBe(11800);
    expect(s.lists).toEqual({ databases: 3, pools: 3, used_clients: 3 });
  });

  it('totals every pool except the admin console and takes the longest wait', () => {
    const s = parse(v118);
    expect(s.totals).toEqual({ clientsActive: 6, clientsWaiting: 4, serversActive: 5, serversIdle: 1, maxWaitSeconds: 7.00025 });
  });

  it('converts SHOW STATS strings and microseconds, beyond 2^31', () => {
    const [app] = parse(v118).stats;
    expect(app).toEqual({
      database: 'app', totalXactCount: 1000, totalQueryCount: 3000, totalReceivedBytes: 90_000_000_000, totalSentBytes: 200_000,
      totalXactSeconds: 5, totalQuerySeconds: 3, totalWaitSeconds: 1.5, avgXactSeconds: 0.005, avgQuerySeconds: 0.001, avgWaitSeconds: 0.00025,
      rates: null,
    });
  });

  it('reads servers and clients, pairs links, and hides pgwarden sessions', () => {
    const s = parse(v118);
    expect(s.servers[0]).toEqual({
      type: 'server', user: 'web', database: 'app', state: 'active', addr: '10.0.0.5', port: 5432,
      connectTime: new Date('2024-05-01T09:00:00Z'), requestTime: new Date('2024-05-01T09:59:59Z'), waitSeconds: 0,
      ptr: '0x1001', link: '0x2001', remotePid: 4242, applicationName: 'web-1',
    });
    // Empty strings and zeroes mean "not set": an idle server has no link, no pid and no request yet.
    expect(s.servers[1]).toMatchObject({ link: null, remotePid: null, requestTime: null, applicationName: null });
    expect(s.clients.map((c) => c.ptr)).toEqual(['0x2001', '0x2002']);
    expect(s.clients[0]).toMatchObject({ type: 'client', state: 'active', link: '0x1001', addr: '192.168.1.10', port: 51000 });
    expect(s.clients[1]).toMatchObject({ state: 'waiting', addr: 'unix', port: 3131, waitSeconds: 2.5, link: null });
  });

  it('reads the older single cancel counter, all-string numbers and NULLs (1.17)', () => {
    const s = parse(v117);
    expect(s.pools[0]).toEqual({
      database: 'app', user: 'web', clActive: 2, clWaiting: 0, clCancelReq: 1, svActive: 2, svIdle: 0, svUsed: 0, svTested: 0, svLogin: 0,
      maxWaitSeconds: 0, poolMode: 'session',
    });
    expect(s.servers[0]).toEqual({
      type: 'server', user: 'web', database: 'app', state: 'used', addr: null, port: null,
      // A zone abbreviation other than UTC/GMT is ambiguous: no guess.
      connectTime: null, requestTime: new Date('2024-05-01T07:00:00Z'), waitSeconds: 0,
      ptr: '0x3001', link: null, remotePid: null, applicationName: null,
    });
    expect(s.version).toBeNull();
    expect(s.versionNum).toBeNull();
    expect(s.lists).toEqual({});
    expect(s.stats[0]?.totalXactCount).toBe(10);
  });

  it('reads a console without maxwait_us, pool_mode or wait columns, and request-based stats (1.7)', () => {
    const s = parse(v17);
    expect(s.pools[0]).toMatchObject({ maxWaitSeconds: 4, poolMode: null, clCancelReq: null, clWaiting: 2 });
    expect(s.stats[0]).toMatchObject({
      totalQueryCount: 500, totalXactCount: null, totalQuerySeconds: 4, totalXactSeconds: null, totalWaitSeconds: null, avgQuerySeconds: 0.008, avgWaitSeconds: null,
    });
    expect(s.clients[0]).toMatchObject({ state: 'waiting', waitSeconds: null, applicationName: null, link: null });
    expect(s.totals).toMatchObject({ clientsWaiting: 2, maxWaitSeconds: 4 });
  });

  it('computes rates against the previous snapshot', () => {
    const first = parse(v117, undefined, new Date('2024-05-01T10:00:00Z'));
    const next: RowSets = {
      ...v117,
      stats: [
        {
          ...(v117['stats']?.[0] as Row), total_xact_count: '30', total_query_count: '60', total_received: '3000', total_sent: '6000',
          total_xact_time: '2100', total_query_time: '4200', total_wait_time: '1000000',
        },
      ],
    };
    const second = parse(next, first, new Date('2024-05-01T10:00:02Z'));
    expect(second.stats[0]?.rates).toEqual({
      intervalSeconds: 2, xactsPerSecond: 10, queriesPerSecond: 20, receivedBytesPerSecond: 1000, sentBytesPerSecond: 2000,
      waitSecondsPerSecond: 0.5, avgQuerySeconds: 0.0001, avgXactSeconds: 0.0001,
    });
  });

  it('gives no rates after a counter reset, for a new database, or with no queries in between', () => {
    const first = parse(v117, undefined, new Date('2024-05-01T10:00:00Z'));
    const restarted: RowSets = { ...v117, stats: [{ ...(v117['stats']?.[0] as Row), total_query_count: '5' }, { ...(v117['stats']?.[0] as Row), database: 'new' }] };
    const second = parse(restarted, first, new Date('2024-05-01T10:00:02Z'));
    expect(second.stats.map((d) => d.rates)).toEqual([null, null]);
    const idle = parse(v117, first, new Date('2024-05-01T10:00:02Z'));
    expect(idle.stats[0]?.rates).toMatchObject({ queriesPerSecond: 0, avgQuerySeconds: null, avgXactSeconds: null });
  });

  it('rejects a value that is not a number', () => {
    const broken: RowSets = { pools: [{ ...(v118['pools']?.[1] as Row), maxwait_us: 'soon' }] };
    expect(() => parse(broken)).toThrow(/maxwait_us/);
  });

  it('runs only admin-console commands, without parameters', () => {
    const queries = Object.values(pgbouncerProbe.queries(undefined));
    expect(queries.map((q) => q.text)).toEqual(['SHOW POOLS', 'SHOW STATS', 'SHOW SERVERS', 'SHOW CLIENTS', 'SHOW LISTS', 'SHOW VERSION']);
    expect(queries.every((q) => q.values === undefined)).toBe(true);
    expect(pgbouncerProbe).toMatchObject({ id: 'pgbouncer', target: 'pgbouncer', cadenceMs: 2000, minServerVersion: 0 });
  });
});
