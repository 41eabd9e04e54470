import { describe, expect, it } from 'vitest';
import type { Row, ServerInfo } from '../../src/db/types.js';
import { bloatCandidates, confirmCadenceMs, tablesProbe, type TablesSnapshot } from '../../src/probes/tables.js';
import type { RowSets } from '../../src/probes/types.js';

const now = new Date('2025-01-01T12:00:00Z');

const server: ServerInfo = {
  versionNum: 150004,
  version: '15.4',
  inRecovery: false,
  currentUser: 'monitor',
  database: 'app',
  superuser: false,
  monitor: true,
  extensions: { pgstattuple: '1.5' },
  preloadLibraries: null,
};

function summary(overrides: Partial<Record<string, unknown>> = {}): Row {
  return { database: 'app', total_tables: '50000', pgstattuple_schema: 'public', pgstattuple_allowed: true, ...overrides };
}

// As the driver returns them: int8 as strings, oid/int4 as numbers, float8 as numbers, NULLs as null.
function tableRow(oid: number, overrides: Partial<Record<string, unknown>> = {}): Row {
  return {
    oid,
    schema: 'public',
    name: `t${oid}`,
    materialized: false,
    unlogged: false,
    locked: false,
    table_bytes: '1073741824',
    indexes_bytes: '104857600',
    toast_bytes: '0',
    total_bytes: '1178599424',
    n_live_tup: '1000000',
    n_dead_tup: '250000',
    n_mod_since_analyze: '300000',
    n_ins_since_vacuum: '5',
    last_vacuum: null,
    last_autovacuum: new Date('2024-12-31T00:00:00Z'),
    last_analyze: null,
    last_autoanalyze: new Date('2024-12-31T01:00:00Z'),
    vacuum_count: '0',
    autovacuum_count: '12',
    analyze_count: '0',
    autoanalyze_count: '30',
    autovacuum_enabled: true,
    xid_age: 123456,
    estimated_bloat_bytes: '536870912',
    estimated_bloat_fraction: 0.5,
    ...overrides,
  };
}

function indexRow(oid: number, tableOid: number, overrides: Partial<Record<string, unknown>> = {}): Row {
  return {
    oid,
    table_oid: tableOid,
    schema: 'public',
    table_name: `t${tableOid}`,
    name: `i${oid}`,
    btree: true,
    is_unique: false,
    is_primary: false,
    is_valid: true,
    locked: false,
    index_bytes: '104857600',
    idx_scan: '42',
    duplicates_likely: false,
    estimated_bloat_bytes: '52428800',
    estimated_bloat_fraction: 0.5,
    ...overrides,
  };
}

function parse(rows: RowSets, previous?: TablesSnapshot, at: Date = now): TablesSnapshot {
  return tablesProbe.parse(rows, { server, now: at, previous });
}

describe('tables probe parse', () => {
  const rows: RowSets = {
    summary: [summary()],
    tables: [
      tableRow(100),
      tableRow(200, {
        locked: true, table_bytes: null, indexes_bytes: null, toast_bytes: null, total_bytes: null, n_live_tup: '0', n_dead_tup: '0',
        n_ins_since_vacuum: null, autovacuum_enabled: false, estimated_bloat_bytes: null, estimated_bloat_fraction: null,
      }),
    ],
    indexes: [indexRow(101, 100, { is_unique: true, is_primary: true }), indexRow(102, 100, { duplicates_likely: true, estimated_bloat_bytes: null, estimated_bloat_fraction: null, idx_scan: null })],
    vacuums: [
      { pid: 4242, database: 'app', relid: 100, schema: 'public', table_name: 't100', phase: 'scanning heap', heap_blks_total: '1000', heap_blks_scanned: '250', heap_blks_vacuumed: '0', index_vacuum_count: '0', autovacuum: true, wraparound: true, running_seconds: 12.5 },
      { pid: 4243, database: 'other', relid: 555, schema: null, table_name: null, phase: 'initializing', heap_blks_total: '0', heap_blks_scanned: '0', heap_blks_vacuumed: '0', index_vacuum_count: '0', autovacuum: false, wraparound: false, running_seconds: null },
    ],
    invalid_indexes: [
      { oid: 300, schema: 'public', table_name: 't100', name: 'broken_key', is_unique: true, is_primary: false, definition: 'CREATE UNIQUE INDEX broken_key ON public.t100 USING btree (v)', index_bytes: '0', building: false, build_phase: null },
      { oid: 301, schema: 'public', table_name: 't100', name: 'in_progress', is_unique: false, is_primary: false, definition: 'CREATE INDEX in_progress ON public.t100 USING btree (w)', index_bytes: null, building: true, build_phase: 'waiting for writers before build' },
    ],
    confirm_tables: [{ oid: 100, table_len: '1073741824', dead_tuple_len: '268435456', approx_free_space: '268435456', scanned_percent: 12.5 }],
    confirm_indexes: [{ oid: 101, index_size: '104857600', leaf_pages: '12000', empty_pages: '10', deleted_pages: '20', avg_leaf_density: 45, fillfactor: 90, block_size: 8192 }],
  };
  const snapshot = parse(rows);

  it('converts the summary and table rows, keeping NULL as null', () => {
    expect(snapshot.database).toBe('app');
    expect(snapshot.totalTables).toBe(50000);
    expect(snapshot.confirmation).toEqual({ available: true, reason: null });
    expect(snapshot.tables[0]).toMatchObject({
      oid: 100, schema: 'public', name: 't100', tableBytes: 1073741824, totalBytes: 1178599424, liveTuples: 1000000, deadTuples: 250000,
      deadFraction: 0.2, modSinceAnalyze: 300000, insertsSinceVacuum: 5, lastVacuum: null, vacuumCount: 0, autovacuumCount: 12,
      autovacuumEnabled: true, xidAge: 123456, estimatedBloatBytes: 536870912, estimatedBloatFraction: 0.5,
    });
    expect(snapshot.tables[1]).toMatchObject({ locked: true, tableBytes: null, totalBytes: null, deadFraction: null, insertsSinceVacuum: null, autovacuumEnabled: false, estimatedBloatBytes: null, confirmed: null });
  });

  it('attaches the pgstattuple measurements', () => {
    expect(snapshot.tables[0]?.confirmed).toEqual({
      at: now, tableBytes: 1073741824, deadTupleBytes: 268435456, freeBytes: 268435456, bloatBytes: 536870912, bloatFraction: 0.5, scannedPercent: 12.5,
    });
    const key = snapshot.indexes[0]?.confirmed;
    expect(key).toMatchObject({ at: now, indexBytes: 104857600, leafPages: 12000, emptyPages: 10, deletedPages: 20, avgLeafDensity: 45 });
    // Half the leaf space (45 of 90 %) plus 30 empty or deleted pages.
    expect(key?.bloatBytes).toBe(12000 * 8192 * 0.5 + 30 * 8192);
    expect(snapshot.indexes[1]).toMatchObject({ duplicatesLikely: true, estimatedBloatBytes: null, scans: null, confirmed: null });
  });

  it('parses vacuum progress with a percentage only when the total is known', () => {
    expect(snapshot.vacuums[0]).toMatchObject({ pid: 4242, table: 't100', phase: 'scanning heap', heapBlocksTotal: 1000, heapBlocksScanned: 250, percent: 25, autovacuum: true, wraparound: true, runningSeconds: 12.5 });
    expect(snapshot.vacuums[1]).toMatchObject({ database: 'other', schema: null, table: null, percent: null, runningSeconds: null });
  });

  it('parses invalid indexes and whether they are being built', () => {
    expect(snapshot.invalidIndexes[0]).toMatchObject({ name: 'broken_key', unique: true, primary: false, indexBytes: 0, building: false, buildPhase: null });
    expect(snapshot.invalidIndexes[1]).toMatchObject({ name: 'in_progress', indexBytes: null, building: true, buildPhase: 'waiting for writers before build' });
  });

  it('reads a leaf density of NULL (an index without leaves) as no leaf waste', () => {
    const empty = parse({ ...rows, confirm_indexes: [{ oid: 101, index_size: '8192', leaf_pages: '0', empty_pages: '0', deleted_pages: '0', avg_leaf_density: null, fillfactor: 90, block_size: 8192 }] });
    expect(empty.indexes[0]?.confirmed).toMatchObject({ avgLeafDensity: null, bloatBytes: 0, bloatFraction: 0 });
  });

  it('says why nothing is confirmed without pgstattuple, or without the privilege', () => {
    const missing = parse({ summary: [summary({ pgstattuple_schema: null, pgstattuple_allowed: null })], tables: [tableRow(100)] });
    expect(missing.confirmation.available).toBe(false);
    expect(missing.confirmation.reason).toContain('CREATE EXTENSION pgstattuple');
    expect(missing.tables[0]?.confirmed).toBeNull();
    const denied = parse({ summary: [summary({ pgstattuple_allowed: false })], tables: [tableRow(100)] });
    expect(denied.confirmation.reason).toContain('pg_stat_scan_tables');
  });

  it('throws without a summary row rather than inventing a snapshot', () => {
    expect(() => parse({ tables: [] })).toThrow(/summary/);
  });

  describe('carrying measurements forward', () => {
    const unmeasured: RowSets = { summary: [summary()], tables: [tableRow(100)], indexes: [indexRow(101, 100)] };

    it('reuses a recent measurement when the relation was neither vacuumed nor resized', () => {
      const later = parse(unmeasured, snapshot, new Date(now.getTime() + 5 * 60_000));
      expect(later.tables[0]?.confirmed?.at).toEqual(now);
      expect(later.indexes[0]?.confirmed?.at).toEqual(now);
    });

    it('drops it after a vacuum, after a size change, or when it is older than the cadence', () => {
      const vacuumed = parse({ ...unmeasured, tables: [tableRow(100, { autovacuum_count: '13' })] }, snapshot, new Date(now.getTime() + 60_000));
      expect(vacuumed.tables[0]?.confirmed).toBeNull();
      expect(vacuumed.indexes[0]?.confirmed).toBeNull();
      const grown = parse({ ...unmeasured, tables: [tableRow(100, { table_bytes: '2147483648' })] }, snapshot, new Date(now.getTime() + 60_000));
      expect(grown.tables[0]?.confirmed).toBeNull();
      const old = parse(unmeasured, snapshot, new Date(now.getTime() + confirmCadenceMs));
      expect(old.tables[0]?.confirmed).toBeNull();
    });

    it('prefers a fresh measurement over a carried one', () => {
      const fresh = parse({ ...unmeasured, confirm_tables: [{ oid: 100, table_len: '1073741824', dead_tuple_len: '0', approx_free_space: '0', scanned_percent: 1 }] }, snapshot, new Date(now.getTime() + 60_000));
      expect(fresh.tables[0]?.confirmed).toMatchObject({ bloatBytes: 0, bloatFraction: 0 });
    });
  });
});

describe('tables probe follow-up (pgstattuple candidates)', () => {
  const many: RowSets = {
    summary: [summary({ pgstattuple_schema: 'my "ext"' })],
    tables: [
      ...[1, 2, 3, 4, 5, 6].map((n) => tableRow(n, { estimated_bloat_bytes: String(n * 1000) })),
      tableRow(7, { estimated_bloat_bytes: '0' }),
      tableRow(8, { locked: true, estimated_bloat_bytes: '99999999' }),
      // No estimate (statistics hidden): ranked by size, the bound on its bloat.
      tableRow(9, { estimated_bloat_bytes: null, table_bytes: '5500' }),
      tableRow(10, { unlogged: true, estimated_bloat_bytes: '999999' }),
    ],
    indexes: [
      indexRow(11, 1, { estimated_bloat_bytes: '500' }),
      indexRow(12, 1, { btree: false, estimated_bloat_bytes: null, index_bytes: '999999' }),
      indexRow(13, 1, { is_valid: false, estimated_bloat_bytes: '999999' }),
      indexRow(14, 2, { duplicates_likely: true, estimated_bloat_bytes: null, index_bytes: '700' }),
      indexRow(15, 2, { estimated_bloat_bytes: '0' }),
      indexRow(16, 10, { estimated_bloat_bytes: '900' }),
    ],
  };

  it('picks the five largest estimates, skipping locked relations, and quotes the extension schema', () => {
    const queries = tablesProbe.followUp?.(many, server) ?? {};
    expect(queries['confirm_tables']?.values).toEqual([[10, 6, 9, 5, 4]]);
    expect(queries['confirm_tables']?.text).toContain('"my ""ext""".pgstattuple_approx(');
    expect(queries['confirm_indexes']?.values).toEqual([[16, 14, 11]]);
    expect(queries['confirm_indexes']?.text).toContain('"my ""ext""".pgstatindex(');
  });

  it('leaves unlogged relations alone on a standby, where they cannot be read', () => {
    const candidates = bloatCandidates(many, { ...server, inRecovery: true });
    expect(candidates.tables).toEqual([6, 9, 5, 4, 3]);
    expect(candidates.indexes).toEqual([14, 11]);
  });

  it('asks for nothing without pgstattuple or without the privilege to run it', () => {
    expect(tablesProbe.followUp?.({ ...many, summary: [summary({ pgstattuple_schema: null })] }, server)).toEqual({});
    expect(tablesProbe.followUp?.({ ...many, summary: [summary({ pgstattuple_allowed: false })] }, server)).toEqual({});
  });

  it('skips relations whose previous measurement is still reusable', () => {
    const previous = parse({ ...many, summary: [summary()], confirm_tables: [{ oid: 10, table_len: '1073741824', dead_tuple_len: '1', approx_free_space: '1', scanned_percent: 1 }] });
    const candidates = bloatCandidates(many, server, { snapshot: previous, at: now }, new Date(now.getTime() + 60_000));
    expect(candidates.tables).toEqual([6, 9, 5, 4, 3]);
  });
});

describe('tables probe queries', () => {
  it('selects version-specific columns', () => {
    const v15 = tablesProbe.queries(server);
    expect(v15['tables']?.text).toContain('s.n_ins_since_vacuum');
    expect(v15['tables']?.text).not.toContain('relhasoids');
    expect(v15['invalid_indexes']?.text).toContain('pg_stat_progress_create_index');
    const v11 = tablesProbe.queries({ ...server, versionNum: 110000 });
    expect(v11['tables']?.text).toContain('null::int8 as n_ins_since_vacuum');
    expect(v11['tables']?.text).toContain('relhasoids');
    expect(v11['indexes']?.text).not.toContain('dedup_enabled and');
    expect(v11['invalid_indexes']?.text).not.toContain('pg_stat_progress_create_index');
  });
});
