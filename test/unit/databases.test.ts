import { describe, expect, it } from 'vitest';
import type { Row } from '../../src/db/types.js';
import { databasesProbe, sizeCadenceMs, sizesDue, type DatabasesSnapshot } from '../../src/probes/databases.js';
import type { RowSets } from '../../src/probes/types.js';

const t0 = new Date('2025-01-01T00:00:00Z');
const t1 = new Date('2025-01-01T00:00:10Z');

// As the driver returns them: int8 counters as strings, int4 as numbers, timestamps as Dates.
function statsRow(overrides: Partial<Record<string, unknown>> = {}): Row {
  return {
    oid: 16384,
    name: 'app',
    allow_connections: true,
    numbackends: 7,
    xact_commit: '1000',
    xact_rollback: '10',
    blks_read: '100',
    blks_hit: '900',
    temp_files: '2',
    temp_bytes: '2048',
    deadlocks: '1',
    conflicts: '0',
    stats_reset: null,
    xid_age: 1_073_741_824,
    multixact_age: 5,
    ...overrides,
  };
}

function parse(rows: RowSets, now: Date, previous?: DatabasesSnapshot): DatabasesSnapshot {
  return databasesProbe.parse(rows, { server: undefined, now, previous });
}

describe('databases probe parse', () => {
  const first = parse(
    {
      stats: [statsRow(), statsRow({ oid: 4, name: 'template0', allow_connections: false, numbackends: 0, xact_commit: '0', xact_rollback: '0', blks_read: '0', blks_hit: '0', temp_files: '0', temp_bytes: '0', deadlocks: '0', xid_age: 200, multixact_age: null })],
      sizes: [{ oid: 16384, size_bytes: '123456789012' }, { oid: 4, size_bytes: null }],
    },
    t0,
  );

  it('converts int8 strings, keeps NULL as null and has no rates on the first snapshot', () => {
    const app = first.databases[0];
    expect(app).toMatchObject({
      oid: 16384, name: 'app', allowConnections: true, connections: 7, commits: 1000, rollbacks: 10, blocksRead: 100, blocksHit: 900,
      tempFiles: 2, tempBytes: 2048, deadlocks: 1, conflicts: 0, statsReset: null, statsWereReset: false, sizeBytes: 123456789012,
      commitsPerSecond: null, rollbacksPerSecond: null, tempBytesPerSecond: null, tempFilesPerSecond: null, deadlocksDelta: null, conflictsDelta: null, recentCacheHitFraction: null,
    });
    expect(app?.cacheHitFraction).toBeCloseTo(0.9, 12);
    expect(app?.xidFraction).toBe(0.5);
    expect(first.intervalSeconds).toBeNull();
    expect(first.sizesAt).toEqual(t0);
    expect(first.sampledAt).toEqual(t0);
  });

  it('keeps the wraparound age of a database that refuses connections, and NULLs as null', () => {
    const template0 = first.databases[1];
    expect(template0).toMatchObject({ name: 'template0', allowConnections: false, xidAge: 200, multixactAge: null, multixactFraction: null, sizeBytes: null });
    // Nothing read or hit: no ratio rather than a made-up 0 or 1.
    expect(template0?.cacheHitFraction).toBeNull();
  });

  it('computes rates and deltas against the previous snapshot and carries sizes forward', () => {
    const second = parse(
      {
        stats: [
          statsRow({ xact_commit: '1500', xact_rollback: '20', blks_read: '110', blks_hit: '990', temp_files: '4', temp_bytes: '12288', deadlocks: '3', conflicts: '1' }),
          statsRow({ oid: 99999, name: 'created_since' }),
        ],
      },
      t1,
      first,
    );
    expect(second.intervalSeconds).toBe(10);
    expect(second.sizesAt).toEqual(t0);
    const app = second.databases[0];
    expect(app).toMatchObject({ commitsPerSecond: 50, rollbacksPerSecond: 1, tempFilesPerSecond: 0.2, tempBytesPerSecond: 1024, deadlocksDelta: 2, conflictsDelta: 1, statsWereReset: false, sizeBytes: 123456789012 });
    expect(app?.recentCacheHitFraction).toBeCloseTo(0.9, 12);
    // A database that appeared since has no rate yet and no size until the next measurement.
    expect(second.databases[1]).toMatchObject({ name: 'created_since', commitsPerSecond: null, deadlocksDelta: null, sizeBytes: null });
  });

  it('treats a counter going backwards as a stats reset: no rates, no deltas', () => {
    const reset = parse({ stats: [statsRow({ xact_commit: '5', deadlocks: '0' })] }, t1, first);
    expect(reset.databases[0]).toMatchObject({ statsWereReset: true, commitsPerSecond: null, rollbacksPerSecond: null, deadlocksDelta: null, tempBytesPerSecond: null, recentCacheHitFraction: null, commits: 5 });
  });

  it('treats a changed stats_reset as a reset even when the counters grew', () => {
    const reset = parse({ stats: [statsRow({ xact_commit: '5000', stats_reset: new Date('2025-01-01T00:00:05Z') })] }, t1, first);
    expect(reset.databases[0]).toMatchObject({ statsWereReset: true, commitsPerSecond: null });
  });

  it('does not compare a recreated database (same name, new oid) with the old one', () => {
    const recreated = parse({ stats: [statsRow({ oid: 20000, xact_commit: '2000' })] }, t1, first);
    expect(recreated.databases[0]).toMatchObject({ statsWereReset: false, commitsPerSecond: null, sizeBytes: null });
  });

  it('has no rate when the clock did not move', () => {
    const same = parse({ stats: [statsRow({ xact_commit: '2000' })] }, t0, first);
    expect(same.intervalSeconds).toBeNull();
    expect(same.databases[0]?.commitsPerSecond).toBeNull();
  });
});

describe('databases probe size cadence', () => {
  const now = new Date();
  const base: DatabasesSnapshot = { sampledAt: now, intervalSeconds: null, sizesAt: now, databases: [] };

  it('measures sizes on the first run, and when the last measurement is older than the cadence', () => {
    expect(sizesDue(undefined, now)).toBe(true);
    expect(sizesDue({ snapshot: { ...base, sizesAt: null }, at: now }, now)).toBe(true);
    expect(sizesDue({ snapshot: { ...base, sizesAt: new Date(now.getTime() - sizeCadenceMs) }, at: now }, now)).toBe(true);
    expect(sizesDue({ snapshot: { ...base, sizesAt: new Date(now.getTime() - sizeCadenceMs + 1000) }, at: now }, now)).toBe(false);
  });

  it('includes the size query only when due', () => {
    expect(Object.keys(databasesProbe.queries(undefined))).toEqual(['stats', 'sizes']);
    expect(Object.keys(databasesProbe.queries(undefined, { snapshot: base, at: now }))).toEqual(['stats']);
    const stale = { ...base, sizesAt: new Date(now.getTime() - 2 * sizeCadenceMs) };
    expect(Object.keys(databasesProbe.queries(undefined, { snapshot: stale, at: now }))).toEqual(['stats', 'sizes']);
  });
});
