/**
 * The connected database's user tables and their indexes: sizes, dead tuples, vacuum and analyze
 * history, estimated bloat (confirmed with pgstattuple where it is installed), vacuums in progress
 * and invalid indexes. Heavy, so it runs on a slow cadence and lists only the largest tables.
 */
import type { Query, Row, ServerInfo } from '../db/types.js';
import type { Probe, RowSets, Stamped } from './types.js';
import { boolean, booleanOrNull, dateOrNull, number, numberOrNull, rowsOf, string, stringOrNull } from './values.js';

/** pgstattuple_approx() figures: dead tuples plus free space is what VACUUM FULL would give back. */
export interface TableBloatConfirmed {
  readonly at: Date;
  readonly tableBytes: number;
  readonly deadTupleBytes: number;
  readonly freeBytes: number;
  /** deadTupleBytes + freeBytes. */
  readonly bloatBytes: number;
  readonly bloatFraction: number | null;
  /** Share of the table pgstattuple_approx read (it skips all-visible pages and estimates them). */
  readonly scannedPercent: number;
}

/** pgstatindex() figures for a b-tree. */
export interface IndexBloatConfirmed {
  readonly at: Date;
  readonly indexBytes: number;
  readonly leafPages: number;
  readonly emptyPages: number;
  readonly deletedPages: number;
  /** Percent of leaf page space in use; null for an index without leaf pages. */
  readonly avgLeafDensity: number | null;
  /** Leaf space beyond what the fillfactor leaves free, plus empty and deleted pages. */
  readonly bloatBytes: number;
  readonly bloatFraction: number | null;
}

export interface TableStats {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly materialized: boolean;
  readonly unlogged: boolean;
  /**
   * An ACCESS EXCLUSIVE lock was held or awaited on the table, its TOAST or one of its indexes, so
   * sizes were not read (reading them would queue behind the lock).
   */
  readonly locked: boolean;
  /** Heap, free space map and visibility map; null when locked. */
  readonly tableBytes: number | null;
  readonly indexesBytes: number | null;
  readonly toastBytes: number | null;
  readonly totalBytes: number | null;
  readonly liveTuples: number | null;
  readonly deadTuples: number | null;
  /** dead / (live + dead); null when both are 0 or unknown. */
  readonly deadFraction: number | null;
  readonly modSinceAnalyze: number | null;
  /** Rows inserted since the last vacuum (PostgreSQL 13+); null before. */
  readonly insertsSinceVacuum: number | null;
  readonly lastVacuum: Date | null;
  readonly lastAutovacuum: Date | null;
  readonly lastAnalyze: Date | null;
  readonly lastAutoanalyze: Date | null;
  readonly vacuumCount: number | null;
  readonly autovacuumCount: number | null;
  readonly analyzeCount: number | null;
  readonly autoanalyzeCount: number | null;
  /** False when the table's reloptions set autovacuum_enabled = false. */
  readonly autovacuumEnabled: boolean;
  /** age(relfrozenxid): which tables hold the database's XID age back. */
  readonly xidAge: number | null;
  /**
   * Statistics-based estimate (pg_stats avg_width/null_frac, reltuples, relpages, fillfactor) of
   * the heap pages beyond what the live rows need. Null when a column has no statistics visible to
   * this role (never analyzed, or no SELECT privilege: pg_stats hides those columns).
   */
  readonly estimatedBloatBytes: number | null;
  readonly estimatedBloatFraction: number | null;
  /** Measured with pgstattuple_approx() for the top candidates; null when not measured. */
  readonly confirmed: TableBloatConfirmed | null;
}

export interface IndexStats {
  readonly oid: number;
  readonly tableOid: number;
  readonly schema: string;
  readonly table: string;
  readonly name: string;
  readonly btree: boolean;
  readonly unique: boolean;
  readonly primary: boolean;
  readonly valid: boolean;
  readonly locked: boolean;
  readonly indexBytes: number | null;
  /** Index scans since the stats reset (0 on a large index: a candidate for removal). */
  readonly scans: number | null;
  /**
   * PostgreSQL 13+ de-duplicates repeated keys in b-trees; the estimate assumes one entry per row,
   * so for these indexes it is left null and only a pgstatindex() measurement counts.
   */
  readonly duplicatesLikely: boolean;
  /** Statistics-based b-tree estimate; null for other access methods, missing statistics or duplicatesLikely. */
  readonly estimatedBloatBytes: number | null;
  readonly estimatedBloatFraction: number | null;
  readonly confirmed: IndexBloatConfirmed | null;
}

export interface VacuumProgress {
  readonly pid: number;
  readonly database: string | null;
  readonly relid: number | null;
  /** Only resolved for the connected database (relids of other databases mean nothing here). */
  readonly schema: string | null;
  readonly table: string | null;
  readonly phase: string | null;
  readonly heapBlocksTotal: number | null;
  readonly heapBlocksScanned: number | null;
  readonly heapBlocksVacuumed: number | null;
  readonly indexVacuumCount: number | null;
  /** heap_blks_scanned / heap_blks_total × 100; null while the total is unknown. */
  readonly percent: number | null;
  readonly autovacuum: boolean;
  /** An autovacuum run to prevent XID wraparound (it does not give way to lock requests). */
  readonly wraparound: boolean;
  readonly runningSeconds: number | null;
}

export interface InvalidIndex {
  readonly oid: number;
  readonly schema: string;
  readonly table: string;
  readonly name: string;
  readonly unique: boolean;
  readonly primary: boolean;
  readonly definition: string;
  readonly indexBytes: number | null;
  /**
   * A CREATE INDEX / REINDEX CONCURRENTLY on its table is running now, so the index may simply not
   * be finished. Null before PostgreSQL 12 (no pg_stat_progress_create_index).
   */
  readonly building: boolean | null;
  readonly buildPhase: string | null;
}

export interface TablesSnapshot {
  readonly database: string;
  /** User tables and materialized views in the database; `tables` lists the largest tableLimit of them. */
  readonly totalTables: number;
  readonly tables: readonly TableStats[];
  /** Indexes of the listed tables. */
  readonly indexes: readonly IndexStats[];
  readonly vacuums: readonly VacuumProgress[];
  readonly invalidIndexes: readonly InvalidIndex[];
  /** Whether pgstattuple could confirm the estimates here, and if not, why and how to enable it. */
  readonly confirmation: { readonly available: boolean; readonly reason: string | null };
}

/** Tables listed per snapshot (by size); the rest are only counted. */
export const tableLimit = 200;
/** Bloat candidates measured with pgstattuple per run, for tables and for indexes each. */
export const confirmLimit = 5;
/** A measurement is reused this long unless the relation was vacuumed or changed size since. */
export const confirmCadenceMs = 60 * 60_000;

const blockHeader = 24;
const btreeSpecial = 16;
// MAXALIGN on every 64-bit platform PostgreSQL supports.
const align = 8;

const userTableFilter = `c.relkind in ('r', 'm') and c.relpersistence <> 't'
     and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'`;

// Sizes are read only for relations nobody holds or awaits ACCESS EXCLUSIVE on: pg_relation_size()
// and friends take ACCESS SHARE and would queue behind it (VACUUM FULL, ALTER TABLE, REINDEX).
// Ranking uses catalog page counts, which need neither locks nor file access, so 50,000 tables stay cheap.
// The statistics views are joined laterally ("offset 0" keeps them parameterized): joined plainly,
// the planner builds pg_stats and pg_stat_all_tables for every relation of the database first.
const topTablesCte = `
locked as (
  select l.relation from pg_locks l
   where l.locktype = 'relation' and l.mode = 'AccessExclusiveLock'
     and l.database = (select oid from pg_database where datname = current_database())
),
user_tables as (
  select c.oid, n.nspname as schema, c.relname as name, c.relkind, c.relpages, c.reltuples, c.reltoastrelid,
         c.relpersistence, c.reloptions, c.relfrozenxid
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where ${userTableFilter}
),
top as (
  select u.*,
         (u.oid in (select relation from locked)
          or u.reltoastrelid in (select relation from locked)
          or exists (select 1 from pg_index x where x.indrelid = u.oid and x.indexrelid in (select relation from locked))) as locked
    from user_tables u
   order by u.relpages
            + coalesce((select t.relpages from pg_class t where t.oid = u.reltoastrelid), 0)
            + coalesce((select sum(i.relpages) from pg_index x join pg_class i on i.oid = x.indexrelid where x.indrelid = u.oid), 0) desc,
            u.oid
   limit ${tableLimit}
)`;

function tablesSql(version: number): string {
  const oids = version < 120000 ? `case when c.relhasoids then 4 else 0 end` : '0';
  const insertsSinceVacuum = version >= 130000 ? 's.n_ins_since_vacuum' : 'null::int8 as n_ins_since_vacuum';
  return `
with ${topTablesCte},
widths as (
  select t.oid, count(*) as columns, count(s.avg_width) as columns_with_stats, max(a.attnum) as natts,
         sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) as data_width,
         bool_or(coalesce(s.null_frac, 0) > 0) as has_nulls
    from top t
    join pg_attribute a on a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
    left join lateral (
      select s.null_frac, s.avg_width from pg_stats s
       where s.schemaname = t.schema and s.tablename = t.name and s.attname = a.attname and not s.inherited
      offset 0) s on true
   group by t.oid
),
tuples as (
  -- heap tuple: 23-byte header, null bitmap when some column has NULLs, OID column before 12; each part MAXALIGNed
  select w.oid, w.columns, w.columns_with_stats,
         ceil((23 + case when w.has_nulls then ceil(w.natts / 8.0) else 0 end + ${oids}) / ${align}.0) * ${align}
           + ceil(w.data_width / ${align}.0) * ${align} as tuple_bytes
    from widths w
),
estimates as (
  select t.oid,
         case when u.columns = 0 or u.columns_with_stats < u.columns or t.reltuples < 0 then null
              else ceil(t.reltuples / greatest(1, floor((current_setting('block_size')::int - ${blockHeader})
                        * coalesce((select o.option_value::int from pg_options_to_table(t.reloptions) o where o.option_name = 'fillfactor'), 100)
                        / 100.0 / (u.tuple_bytes + 4)))) end as expected_pages
    from top t join tuples u on u.oid = t.oid
)
select t.oid, t.schema, t.name, t.relkind = 'm' as materialized, t.relpersistence = 'u' as unlogged, t.locked,
       z.table_size - z.toast_size as table_bytes, z.indexes_size as indexes_bytes, z.toast_size as toast_bytes,
       z.table_size + z.indexes_size as total_bytes,
       s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze, ${insertsSinceVacuum},
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count,
       coalesce((select o.option_value::bool from pg_options_to_table(t.reloptions) o where o.option_name = 'autovacuum_enabled'), true) as autovacuum_enabled,
       age(t.relfrozenxid) as xid_age,
       case when e.expected_pages is not null
            then greatest(t.relpages - e.expected_pages, 0)::int8 * current_setting('block_size')::int end as estimated_bloat_bytes,
       case when e.expected_pages is not null and t.relpages > 0
            then greatest(t.relpages - e.expected_pages, 0)::float8 / t.relpages end as estimated_bloat_fraction
  from top t
  left join estimates e on e.oid = t.oid
  left join lateral (select * from pg_stat_all_tables s where s.relid = t.oid offset 0) s on true
  left join lateral (
    select pg_table_size(t.oid) as table_size, pg_indexes_size(t.oid) as indexes_size,
           coalesce(pg_total_relation_size(nullif(t.reltoastrelid, 0::oid)), 0) as toast_size
     where not t.locked) z on true
 order by coalesce(z.table_size + z.indexes_size, t.relpages::int8 * current_setting('block_size')::int) desc, t.oid`;
}

function indexesSql(version: number): string {
  // De-duplication (13+) stores a repeated key once: the leading column's statistics tell whether it repeats.
  const dedup =
    version >= 130000
      ? `(not ix.is_unique and ix.dedup_enabled and w.leading_distinct is not null
          and (w.leading_distinct between -0.5 and -0.0000001 or (w.leading_distinct > 0 and w.leading_distinct * 2 <= ix.reltuples)))`
      : 'false';
  return `
with ${topTablesCte},
idx as (
  select x.indexrelid as oid, x.indrelid as table_oid, t.schema, t.name as table_name, i.relname as name,
         i.relpages, i.reltuples, am.amname = 'btree' as btree, x.indisunique as is_unique, x.indisprimary as is_primary,
         x.indisvalid as is_valid, t.locked or x.indexrelid in (select relation from locked) as locked,
         coalesce((select o.option_value::int from pg_options_to_table(i.reloptions) o where o.option_name = 'fillfactor'), 90) as fillfactor,
         coalesce((select o.option_value::bool from pg_options_to_table(i.reloptions) o where o.option_name = 'deduplicate_items'), true) as dedup_enabled
    from top t
    join pg_index x on x.indrelid = t.oid
    join pg_class i on i.oid = x.indexrelid
    join pg_am am on am.oid = i.relam
),
widths as (
  -- index columns take their statistics from the table column, or for an expression from the index itself
  select ix.oid, count(*) as columns, count(s.avg_width) as columns_with_stats,
         sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) as data_width,
         bool_or(coalesce(s.null_frac, 0) > 0) as has_nulls,
         max(case when ia.attnum = 1 then s.n_distinct end) as leading_distinct
    from idx ix
    join pg_index x on x.indexrelid = ix.oid
    join pg_attribute ia on ia.attrelid = ix.oid and ia.attnum > 0
    left join pg_attribute ta on ta.attrelid = ix.table_oid and ta.attnum = x.indkey[ia.attnum - 1] and ta.attnum > 0
    left join lateral (
      select s.null_frac, s.avg_width, s.n_distinct from pg_stats s
       where s.schemaname = ix.schema and not s.inherited
         and s.tablename = case when ta.attname is null then ix.name else ix.table_name end
         and s.attname = coalesce(ta.attname, ia.attname)
      offset 0) s on true
   where ix.btree
   group by ix.oid
),
estimates as (
  -- b-tree leaf tuple: 8-byte header (16 with a null bitmap) plus the key data, MAXALIGNed, plus a 4-byte line pointer
  select ix.oid, ${dedup} as duplicates_likely,
         case when w.columns_with_stats < w.columns or ix.reltuples < 0 then null
              else 1 + ceil(ix.reltuples / greatest(1, floor((current_setting('block_size')::int - ${blockHeader} - ${btreeSpecial})
                        * ix.fillfactor / 100.0
                        / (ceil(((case when w.has_nulls then 16 else 8 end) + w.data_width) / ${align}.0) * ${align} + 4)))) end as expected_pages
    from idx ix join widths w on w.oid = ix.oid
)
select ix.oid, ix.table_oid, ix.schema, ix.table_name, ix.name, ix.btree, ix.is_unique, ix.is_primary, ix.is_valid, ix.locked,
       case when not ix.locked then pg_relation_size(ix.oid) end as index_bytes,
       s.idx_scan, coalesce(e.duplicates_likely, false) as duplicates_likely,
       case when e.expected_pages is not null and not e.duplicates_likely
            then greatest(ix.relpages - e.expected_pages, 0)::int8 * current_setting('block_size')::int end as estimated_bloat_bytes,
       case when e.expected_pages is not null and not e.duplicates_likely and ix.relpages > 0
            then greatest(ix.relpages - e.expected_pages, 0)::float8 / ix.relpages end as estimated_bloat_fraction
  from idx ix
  left join estimates e on e.oid = ix.oid
  left join lateral (select s.idx_scan from pg_stat_all_indexes s where s.indexrelid = ix.oid offset 0) s on true
 order by ix.table_oid, ix.oid`;
}

const summarySql = `
select current_database() as database,
       (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace where ${userTableFilter}) as total_tables,
       (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'pgstattuple') as pgstattuple_schema,
       (select bool_and(has_function_privilege(p.oid, 'EXECUTE'))
          from pg_extension e join pg_proc p on p.pronamespace = e.extnamespace
         where e.extname = 'pgstattuple' and p.proname in ('pgstattuple_approx', 'pgstatindex')) as pgstattuple_allowed`;

const vacuumsSql = `
select p.pid, p.datname as database, p.relid,
       case when p.datid = (select oid from pg_database where datname = current_database()) then n.nspname end as schema,
       case when p.datid = (select oid from pg_database where datname = current_database()) then c.relname end as table_name,
       p.phase, p.heap_blks_total, p.heap_blks_scanned, p.heap_blks_vacuumed, p.index_vacuum_count,
       coalesce(a.backend_type = 'autovacuum worker', false) as autovacuum,
       coalesce(a.query like '%to prevent wraparound%', false) as wraparound,
       extract(epoch from now() - a.xact_start)::float8 as running_seconds
  from pg_stat_progress_vacuum p
  left join pg_stat_activity a on a.pid = p.pid
  left join pg_class c on c.oid = p.relid
  left join pg_namespace n on n.oid = c.relnamespace
 where coalesce(a.application_name, '') not like 'pgwarden%'
 order by p.pid`;

function invalidIndexesSql(version: number): string {
  const building =
    version >= 120000
      ? `(select p.phase from pg_stat_progress_create_index p
           where p.datid = (select oid from pg_database where datname = current_database())
             and (p.index_relid = x.indexrelid or (p.relid = x.indrelid and p.command like '%CONCURRENTLY')) limit 1)`
      : 'null::text';
  const buildingFlag = version >= 120000 ? 'b.phase is not null' : 'null::bool';
  return `
with locked as (
  select l.relation from pg_locks l
   where l.locktype = 'relation' and l.mode = 'AccessExclusiveLock'
     and l.database = (select oid from pg_database where datname = current_database())
)
select x.indexrelid as oid, n.nspname as schema, t.relname as table_name, i.relname as name,
       x.indisunique as is_unique, x.indisprimary as is_primary, pg_get_indexdef(x.indexrelid) as definition,
       case when x.indexrelid not in (select relation from locked) and x.indrelid not in (select relation from locked)
            then pg_relation_size(x.indexrelid) end as index_bytes,
       ${buildingFlag} as building, b.phase as build_phase
  from pg_index x
  join pg_class i on i.oid = x.indexrelid
  join pg_class t on t.oid = x.indrelid
  join pg_namespace n on n.oid = i.relnamespace
  left join lateral (select ${building} as phase) b on true
 where not x.indisvalid and n.nspname not in ('pg_catalog', 'information_schema') and t.relpersistence <> 't'
 order by n.nspname, t.relname, i.relname`;
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function parseTableRow(row: Row): Omit<TableStats, 'confirmed'> {
  const live = numberOrNull(row, 'n_live_tup');
  const dead = numberOrNull(row, 'n_dead_tup');
  return {
    oid: number(row, 'oid'),
    schema: string(row, 'schema'),
    name: string(row, 'name'),
    materialized: boolean(row, 'materialized'),
    unlogged: boolean(row, 'unlogged'),
    locked: boolean(row, 'locked'),
    tableBytes: numberOrNull(row, 'table_bytes'),
    indexesBytes: numberOrNull(row, 'indexes_bytes'),
    toastBytes: numberOrNull(row, 'toast_bytes'),
    totalBytes: numberOrNull(row, 'total_bytes'),
    liveTuples: live,
    deadTuples: dead,
    deadFraction: live !== null && dead !== null && live + dead > 0 ? dead / (live + dead) : null,
    modSinceAnalyze: numberOrNull(row, 'n_mod_since_analyze'),
    insertsSinceVacuum: numberOrNull(row, 'n_ins_since_vacuum'),
    lastVacuum: dateOrNull(row, 'last_vacuum'),
    lastAutovacuum: dateOrNull(row, 'last_autovacuum'),
    lastAnalyze: dateOrNull(row, 'last_analyze'),
    lastAutoanalyze: dateOrNull(row, 'last_autoanalyze'),
    vacuumCount: numberOrNull(row, 'vacuum_count'),
    autovacuumCount: numberOrNull(row, 'autovacuum_count'),
    analyzeCount: numberOrNull(row, 'analyze_count'),
    autoanalyzeCount: numberOrNull(row, 'autoanalyze_count'),
    autovacuumEnabled: booleanOrNull(row, 'autovacuum_enabled') ?? true,
    xidAge: numberOrNull(row, 'xid_age'),
    estimatedBloatBytes: numberOrNull(row, 'estimated_bloat_bytes'),
    estimatedBloatFraction: numberOrNull(row, 'estimated_bloat_fraction'),
  };
}

function parseIndexRow(row: Row): Omit<IndexStats, 'confirmed'> {
  return {
    oid: number(row, 'oid'),
    tableOid: number(row, 'table_oid'),
    schema: string(row, 'schema'),
    table: string(row, 'table_name'),
    name: string(row, 'name'),
    btree: boolean(row, 'btree'),
    unique: boolean(row, 'is_unique'),
    primary: boolean(row, 'is_primary'),
    valid: boolean(row, 'is_valid'),
    locked: boolean(row, 'locked'),
    indexBytes: numberOrNull(row, 'index_bytes'),
    scans: numberOrNull(row, 'idx_scan'),
    duplicatesLikely: boolean(row, 'duplicates_likely'),
    estimatedBloatBytes: numberOrNull(row, 'estimated_bloat_bytes'),
    estimatedBloatFraction: numberOrNull(row, 'estimated_bloat_fraction'),
  };
}

type Confirmation = TablesSnapshot['confirmation'];

function confirmationOf(rows: RowSets): Confirmation & { readonly schema: string | null } {
  const summary = rowsOf(rows, 'summary')[0];
  const schema = summary === undefined ? null : stringOrNull(summary, 'pgstattuple_schema');
  if (schema === null) {
    return { available: false, schema, reason: 'the pgstattuple extension is not installed in this database: CREATE EXTENSION pgstattuple' };
  }
  if (summary !== undefined && booleanOrNull(summary, 'pgstattuple_allowed') !== true) {
    return { available: false, schema, reason: 'this role may not run pgstattuple functions: GRANT pg_stat_scan_tables (or pg_monitor) TO it' };
  }
  return { available: true, schema, reason: null };
}

function vacuumCountOf(table: Omit<TableStats, 'confirmed'> | undefined): number | null {
  if (table === undefined || table.vacuumCount === null || table.autovacuumCount === null) return null;
  return table.vacuumCount + table.autovacuumCount;
}

function sizeClose(a: number | null, b: number | null): boolean {
  if (a === null || b === null) return false;
  return Math.abs(a - b) <= 0.1 * Math.max(a, b);
}

/** A measurement worth reusing: recent, and the relation has not been vacuumed or resized since. */
function reusable(
  measuredAt: Date | undefined,
  now: Date,
  vacuumsNow: number | null,
  vacuumsThen: number | null,
  bytesNow: number | null,
  bytesThen: number | null,
): boolean {
  if (measuredAt === undefined) return false;
  if (now.getTime() - measuredAt.getTime() >= confirmCadenceMs) return false;
  return vacuumsNow !== null && vacuumsNow === vacuumsThen && sizeClose(bytesNow, bytesThen);
}

/** The previous measurement when it is still reusable, else null. */
function reused<C extends { readonly at: Date }>(
  confirmed: C | null | undefined,
  now: Date,
  vacuumsNow: number | null,
  vacuumsThen: number | null,
  bytesNow: number | null,
  bytesThen: number | null,
): C | null {
  if (confirmed === null || confirmed === undefined) return null;
  return reusable(confirmed.at, now, vacuumsNow, vacuumsThen, bytesNow, bytesThen) ? confirmed : null;
}

interface Candidates {
  readonly tables: readonly number[];
  readonly indexes: readonly number[];
}

/**
 * The relations worth measuring now: the largest estimated bloat, or the size where there is no
 * estimate (statistics hidden from this role, or b-tree de-duplication); measurements still reusable are skipped.
 */
export function bloatCandidates(rows: RowSets, server: ServerInfo | undefined, previous?: Stamped<TablesSnapshot>, now: Date = new Date()): Candidates {
  const tables = rowsOf(rows, 'tables').map(parseTableRow);
  const byOid = new Map(tables.map((table) => [table.oid, table]));
  const before = previous?.snapshot;
  const tablesBefore = new Map((before?.tables ?? []).map((table) => [table.oid, table]));
  const indexesBefore = new Map((before?.indexes ?? []).map((index) => [index.oid, index]));
  // Unlogged relations cannot be read during recovery.
  const readable = (locked: boolean, unlogged: boolean): boolean => !locked && !(unlogged && server?.inRecovery === true);

  // Without an estimate, the size is the bound on what the bloat could be.
  const tableScore = (table: Omit<TableStats, 'confirmed'>): number => table.estimatedBloatBytes ?? table.tableBytes ?? 0;
  const tableOids = tables
    .filter((table) => readable(table.locked, table.unlogged) && tableScore(table) > 0)
    .filter((table) => {
      const prior = tablesBefore.get(table.oid);
      return !reusable(prior?.confirmed?.at, now, vacuumCountOf(table), vacuumCountOf(prior), table.tableBytes, prior?.tableBytes ?? null);
    })
    .sort((a, b) => tableScore(b) - tableScore(a) || a.oid - b.oid)
    .slice(0, confirmLimit)
    .map((table) => table.oid);

  const indexScore = (index: Omit<IndexStats, 'confirmed'>): number => index.estimatedBloatBytes ?? index.indexBytes ?? 0;
  const indexOids = rowsOf(rows, 'indexes')
    .map(parseIndexRow)
    .filter((index) => index.btree && index.valid && readable(index.locked, byOid.get(index.tableOid)?.unlogged ?? false) && indexScore(index) > 0)
    .filter((index) => {
      const prior = indexesBefore.get(index.oid);
      const table = byOid.get(index.tableOid);
      return !reusable(prior?.confirmed?.at, now, vacuumCountOf(table), vacuumCountOf(tablesBefore.get(index.tableOid)), index.indexBytes, prior?.indexBytes ?? null);
    })
    .sort((a, b) => indexScore(b) - indexScore(a) || a.oid - b.oid)
    .slice(0, confirmLimit)
    .map((index) => index.oid);
  return { tables: tableOids, indexes: indexOids };
}

function tableConfirmed(row: Row, at: Date): TableBloatConfirmed {
  const tableBytes = number(row, 'table_len');
  const deadTupleBytes = number(row, 'dead_tuple_len');
  const freeBytes = number(row, 'approx_free_space');
  const bloatBytes = deadTupleBytes + freeBytes;
  return {
    at,
    tableBytes,
    deadTupleBytes,
    freeBytes,
    bloatBytes,
    bloatFraction: tableBytes > 0 ? bloatBytes / tableBytes : null,
    scannedPercent: number(row, 'scanned_percent'),
  };
}

function indexConfirmed(row: Row, at: Date, blockSize: number): IndexBloatConfirmed {
  const indexBytes = number(row, 'index_size');
  const leafPages = number(row, 'leaf_pages');
  const emptyPages = number(row, 'empty_pages');
  const deletedPages = number(row, 'deleted_pages');
  const density = numberOrNull(row, 'avg_leaf_density');
  const fillfactor = numberOrNull(row, 'fillfactor') ?? 90;
  // Leaf pages filled to the fillfactor are healthy; the space below it is what a REINDEX gives back.
  const leafWaste = density === null ? 0 : Math.max(0, leafPages * blockSize * (1 - density / fillfactor));
  const bloatBytes = Math.round(leafWaste + (emptyPages + deletedPages) * blockSize);
  return {
    at,
    indexBytes,
    leafPages,
    emptyPages,
    deletedPages,
    avgLeafDensity: density,
    bloatBytes,
    bloatFraction: indexBytes > 0 ? bloatBytes / indexBytes : null,
  };
}

export const tablesProbe: Probe<TablesSnapshot> = {
  id: 'tables',
  title: 'Tables',
  target: 'server',
  cadenceMs: 300_000,
  minServerVersion: 100000,
  queries: (server) => {
    const version = server?.versionNum ?? 150000;
    return {
      summary: { text: summarySql },
      tables: { text: tablesSql(version) },
      indexes: { text: indexesSql(version) },
      vacuums: { text: vacuumsSql },
      invalid_indexes: { text: invalidIndexesSql(version) },
    };
  },
  // `previous` is optional so that measurements stay reusable once the runner passes it here too.
  followUpOptional: true,
  followUp(rows, server, previous?: Stamped<TablesSnapshot>) {
    const confirmation = confirmationOf(rows);
    if (!confirmation.available || confirmation.schema === null) return {};
    const schema = quoteIdent(confirmation.schema);
    const candidates = bloatCandidates(rows, server, previous);
    const queries: Record<string, Query> = {};
    if (candidates.tables.length > 0) {
      queries['confirm_tables'] = {
        text: `select v.oid, a.table_len, a.dead_tuple_len, a.approx_free_space, a.scanned_percent
                 from unnest($1::oid[]) as v(oid)
                 join pg_class c on c.oid = v.oid
                cross join lateral ${schema}.pgstattuple_approx(v.oid::regclass) a`,
        values: [candidates.tables],
      };
    }
    if (candidates.indexes.length > 0) {
      queries['confirm_indexes'] = {
        text: `select v.oid, s.index_size, s.leaf_pages, s.empty_pages, s.deleted_pages,
                      nullif(s.avg_leaf_density, 'NaN') as avg_leaf_density,
                      coalesce((select o.option_value::int from pg_options_to_table(c.reloptions) o where o.option_name = 'fillfactor'), 90) as fillfactor,
                      current_setting('block_size')::int as block_size
                 from unnest($1::oid[]) as v(oid)
                 join pg_class c on c.oid = v.oid
                cross join lateral ${schema}.pgstatindex(v.oid::regclass) s`,
        values: [candidates.indexes],
      };
    }
    return queries;
  },
  parse(rows, context) {
    const summary = rowsOf(rows, 'summary')[0];
    if (summary === undefined) throw new Error('tables probe returned no summary row');
    const now = context.now;
    const previous = context.previous;
    const { available, reason: unavailable } = confirmationOf(rows);
    const reason = context.followUpError === undefined ? unavailable : `confirmation failed: ${context.followUpError}`;

    const tableRows = rowsOf(rows, 'tables').map(parseTableRow);
    const tablesBefore = new Map((previous?.tables ?? []).map((table) => [table.oid, table]));
    const indexesBefore = new Map((previous?.indexes ?? []).map((index) => [index.oid, index]));
    const tableByOid = new Map(tableRows.map((table) => [table.oid, table]));

    const measuredTables = new Map(rowsOf(rows, 'confirm_tables').map((row) => [number(row, 'oid'), tableConfirmed(row, now)]));
    const measuredIndexes = new Map(
      rowsOf(rows, 'confirm_indexes').map((row) => [number(row, 'oid'), indexConfirmed(row, now, number(row, 'block_size'))]),
    );

    const tables = tableRows.map((table): TableStats => {
      const prior = tablesBefore.get(table.oid);
      const carried = available ? reused(prior?.confirmed, now, vacuumCountOf(table), vacuumCountOf(prior), table.tableBytes, prior?.tableBytes ?? null) : null;
      return { ...table, confirmed: measuredTables.get(table.oid) ?? carried };
    });
    const indexes = rowsOf(rows, 'indexes').map((row): IndexStats => {
      const index = parseIndexRow(row);
      const prior = indexesBefore.get(index.oid);
      const table = tableByOid.get(index.tableOid);
      const vacuumsThen = vacuumCountOf(tablesBefore.get(index.tableOid));
      const carried = available ? reused(prior?.confirmed, now, vacuumCountOf(table), vacuumsThen, index.indexBytes, prior?.indexBytes ?? null) : null;
      return { ...index, confirmed: measuredIndexes.get(index.oid) ?? carried };
    });

    const vacuums = rowsOf(rows, 'vacuums').map((row): VacuumProgress => {
      const total = numberOrNull(row, 'heap_blks_total');
      const scanned = numberOrNull(row, 'heap_blks_scanned');
      return {
        pid: number(row, 'pid'),
        database: stringOrNull(row, 'database'),
        relid: numberOrNull(row, 'relid'),
        schema: stringOrNull(row, 'schema'),
        table: stringOrNull(row, 'table_name'),
        phase: stringOrNull(row, 'phase'),
        heapBlocksTotal: total,
        heapBlocksScanned: scanned,
        heapBlocksVacuumed: numberOrNull(row, 'heap_blks_vacuumed'),
        indexVacuumCount: numberOrNull(row, 'index_vacuum_count'),
        percent: total !== null && scanned !== null && total > 0 ? (100 * scanned) / total : null,
        autovacuum: boolean(row, 'autovacuum'),
        wraparound: boolean(row, 'wraparound'),
        runningSeconds: numberOrNull(row, 'running_seconds'),
      };
    });

    const invalidIndexes = rowsOf(rows, 'invalid_indexes').map((row): InvalidIndex => ({
      oid: number(row, 'oid'),
      schema: string(row, 'schema'),
      table: string(row, 'table_name'),
      name: string(row, 'name'),
      unique: boolean(row, 'is_unique'),
      primary: boolean(row, 'is_primary'),
      definition: string(row, 'definition'),
      indexBytes: numberOrNull(row, 'index_bytes'),
      building: booleanOrNull(row, 'building'),
      buildPhase: stringOrNull(row, 'build_phase'),
    }));

    return {
      database: string(summary, 'database'),
      totalTables: number(summary, 'total_tables'),
      tables,
      indexes,
      vacuums,
      invalidIndexes,
      confirmation: { available, reason },
    };
  },
};
