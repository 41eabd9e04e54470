/**
 * Tables: the most bloated tables of the connected database with dead tuples and vacuum history,
 * then invalid indexes (selectable, for REINDEX) and the vacuums running now.
 */
import type { ReactElement } from 'react';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import { Table } from '../components/Table.js';
import { sortRows } from '../components/table-sort.js';
import type { ColumnSpec } from '../components/table-types.js';
import { formatBytes, formatCount, formatDuration, formatPercent } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { InvalidIndex, TableStats, TablesSnapshot, VacuumProgress } from '../probes/tables.js';
import {
  bar, effectiveSort, filterRows, forKind, memoModel, PartsLine, ScreenFrame, sectionHeights, Sections, selectedIndexOf, since, statusHeight,
  TextLine, type Part, type Section, type Tone,
} from './common.js';
import type { ListModel, ScreenModule, ScreenProps, Selection } from './types.js';

const GB = 1024 ** 3;

/** Bloat: ≥ 1 GB and 30 % is a warning, ≥ 5 GB and 50 % critical (DESIGN.md §5). */
export const bloatWarning = { bytes: GB, fraction: 0.3 } as const;
/** Bloat: critical from both figures. */
export const bloatCritical = { bytes: 5 * GB, fraction: 0.5 } as const;
/** Autovacuum overdue: 24 h without a vacuum with ≥ 20 % and ≥ 10k dead rows (DESIGN.md §5). */
export const overdueVacuum = { seconds: 86_400, fraction: 0.2, deadTuples: 10_000 } as const;

/** A table of the list; schema and table are what VACUUM and ANALYZE target. */
export interface TableRow {
  readonly kind: 'table';
  readonly key: string;
  readonly schema: string;
  readonly table: string;
  readonly stats: TableStats;
}

/** An invalid index of the list; schema and index are what REINDEX targets. */
export interface InvalidIndexRow {
  readonly kind: 'invalidIndex';
  readonly key: string;
  readonly schema: string;
  readonly index: string;
  /** The table the index belongs to (same schema). */
  readonly table: string;
  readonly invalid: InvalidIndex;
}

/** A row of the Tables list: tables first, then invalid indexes. */
export type TablesRow = TableRow | InvalidIndexRow;

/** The bloat that counts: the pgstattuple measurement when there is one, else the estimate. */
export function effectiveBloat(stats: TableStats): { bytes: number | null; fraction: number | null } {
  if (stats.confirmed !== null) return { bytes: stats.confirmed.bloatBytes, fraction: stats.confirmed.bloatFraction };
  return { bytes: stats.estimatedBloatBytes, fraction: stats.estimatedBloatFraction };
}

/** How alarming a table's bloat is. */
export function bloatTone(stats: TableStats): Tone | undefined {
  const { bytes, fraction } = effectiveBloat(stats);
  if (bytes === null || fraction === null) return undefined;
  if (bytes >= bloatCritical.bytes && fraction >= bloatCritical.fraction) return 'critical';
  if (bytes >= bloatWarning.bytes && fraction >= bloatWarning.fraction) return 'warning';
  return undefined;
}

/** Dead rows piling up with no vacuum for a day (or autovacuum off: critical). */
export function vacuumTone(stats: TableStats, now: Date): Tone | undefined {
  if (!stats.autovacuumEnabled) return 'critical';
  const last = Math.max(stats.lastVacuum?.getTime() ?? 0, stats.lastAutovacuum?.getTime() ?? 0);
  const overdue = now.getTime() - last >= overdueVacuum.seconds * 1000;
  if (overdue && (stats.deadFraction ?? 0) >= overdueVacuum.fraction && (stats.deadTuples ?? 0) >= overdueVacuum.deadTuples) return 'warning';
  return undefined;
}

function sizeText(stats: TableStats, bytes: number | null): string {
  return stats.locked ? 'locked' : formatBytes(bytes);
}

function tableColumns(now: Date): readonly ColumnSpec<TableRow>[] {
  return [
    { id: 'table', title: 'table', width: 22, text: (row) => `${row.schema}.${row.table}`, tone: (row) => bloatTone(row.stats) ?? (row.stats.autovacuumEnabled ? undefined : 'critical') },
    { id: 'size', title: 'size', width: 8, align: 'right', text: (row) => sizeText(row.stats, row.stats.totalBytes), sortValue: (row) => row.stats.totalBytes, tone: (row) => (row.stats.locked ? 'muted' : undefined) },
    { id: 'bloat', title: 'bloat', width: 8, align: 'right', text: (row) => sizeText(row.stats, row.stats.estimatedBloatBytes), sortValue: (row) => row.stats.estimatedBloatBytes, tone: (row) => bloatTone(row.stats) },
    { id: 'bloatPercent', title: 'bloat%', width: 6, align: 'right', text: (row) => (row.stats.locked ? '' : formatPercent(row.stats.estimatedBloatFraction)), sortValue: (row) => row.stats.estimatedBloatFraction, tone: (row) => bloatTone(row.stats) },
    {
      id: 'confirmed', title: 'confirmed', width: 12, align: 'right',
      text: (row) => (row.stats.confirmed === null ? '' : `${formatBytes(row.stats.confirmed.bloatBytes)} ${formatPercent(row.stats.confirmed.bloatFraction, 0)}`),
      sortValue: (row) => row.stats.confirmed?.bloatBytes ?? null, tone: (row) => bloatTone(row.stats),
    },
    { id: 'dead', title: 'dead rows', width: 9, align: 'right', text: (row) => formatCount(row.stats.deadTuples), sortValue: (row) => row.stats.deadTuples, tone: (row) => vacuumTone(row.stats, now) },
    { id: 'deadPercent', title: 'dead%', width: 6, align: 'right', text: (row) => formatPercent(row.stats.deadFraction), sortValue: (row) => row.stats.deadFraction, tone: (row) => vacuumTone(row.stats, now) },
    { id: 'lastAutovacuum', title: 'autovacuumed', width: 12, align: 'right', text: (row) => since(row.stats.lastAutovacuum, now), sortValue: (row) => row.stats.lastAutovacuum?.getTime() ?? null },
    { id: 'lastVacuum', title: 'vacuumed', width: 11, align: 'right', text: (row) => since(row.stats.lastVacuum, now), sortValue: (row) => row.stats.lastVacuum?.getTime() ?? null },
    { id: 'autovacuum', title: 'autovacuum', width: 10, text: (row) => (row.stats.autovacuumEnabled ? 'on' : 'OFF'), tone: (row) => (row.stats.autovacuumEnabled ? undefined : 'critical') },
  ];
}

function indexTone(index: InvalidIndex): Tone | undefined {
  if (index.building === true) return 'muted';
  return index.unique || index.primary ? 'critical' : 'warning';
}

const indexColumns: readonly ColumnSpec<TablesRow>[] = [
  forKind<'invalidIndex', TablesRow, InvalidIndexRow>('invalidIndex', { id: 'index', title: 'index', width: 28, text: (row) => `${row.schema}.${row.index}`, tone: (row) => indexTone(row.invalid) }),
  forKind<'invalidIndex', TablesRow, InvalidIndexRow>('invalidIndex', { id: 'indexTable', title: 'table', width: 16, text: (row) => row.table }),
  forKind<'invalidIndex', TablesRow, InvalidIndexRow>('invalidIndex', { id: 'indexSize', title: 'size', width: 8, align: 'right', text: (row) => formatBytes(row.invalid.indexBytes) }),
  forKind<'invalidIndex', TablesRow, InvalidIndexRow>('invalidIndex', { id: 'indexKind', title: 'kind', width: 7, text: (row) => (row.invalid.primary ? 'primary' : row.invalid.unique ? 'unique' : '') }),
  forKind<'invalidIndex', TablesRow, InvalidIndexRow>('invalidIndex', {
    id: 'indexState', title: 'state', width: 'flex', minWidth: 24, tone: (row) => indexTone(row.invalid),
    text: (row) => {
      if (row.invalid.building === true) return `being built: ${row.invalid.buildPhase ?? 'in progress'}`;
      return `invalid${row.invalid.building === null ? ' (build state unknown)' : ''}: ${row.invalid.definition}`;
    },
  }),
];

/** Largest estimated bloat first. */
export const tablesDefaultSort = { column: 'bloat', descending: true } as const;

const noRows: readonly TablesRow[] = [];

interface TablesParts {
  readonly tables: readonly TableRow[];
  readonly indexes: readonly InvalidIndexRow[];
}

function partsOf(snapshot: TablesSnapshot, props: ScreenProps): TablesParts {
  const filter = props.viewState.filter;
  const tables = snapshot.tables.map((stats): TableRow => ({ kind: 'table', key: `table:${stats.schema}.${stats.name}`, schema: stats.schema, table: stats.name, stats }));
  const indexes = snapshot.invalidIndexes.map((invalid): InvalidIndexRow => ({
    kind: 'invalidIndex', key: `index:${invalid.schema}.${invalid.name}`, schema: invalid.schema, index: invalid.name, table: invalid.table, invalid,
  }));
  // Tables have no user, application, state or client: the filter matches their names.
  const shownTables = filterRows(tables, filter, (row) => [snapshot.database, `${row.schema}.${row.table}`]);
  const shownIndexes = filterRows(indexes, filter, (row) => [snapshot.database, `${row.schema}.${row.index}`, `${row.schema}.${row.table}`]);
  return {
    tables: sortRows(shownTables, tableColumns(props.now), effectiveSort(props.viewState, tablesDefaultSort)),
    indexes: shownIndexes,
  };
}

function modelColumns(now: Date): readonly ColumnSpec<TablesRow>[] {
  return tableColumns(now).map((column) => forKind<'table', TablesRow, TableRow>('table', column));
}

/** Tables (sorted), then invalid indexes, as one list for the cursor. */
export const tablesModel = memoModel((props: ScreenProps): ListModel<TablesRow> => {
  const data = snapshotOf(resultOf(props.results, 'tables'));
  const columns = modelColumns(props.now);
  if (data === undefined) return { rows: noRows, columns, rowKey: (row) => row.key, defaultSort: tablesDefaultSort };
  const parts = partsOf(data.snapshot, props);
  return { rows: [...parts.tables, ...parts.indexes], columns, rowKey: (row) => row.key, defaultSort: tablesDefaultSort };
});

/** The selected table (for VACUUM and ANALYZE) or invalid index (for REINDEX), or null. */
export function selectedTablesRow(props: ScreenProps): TablesRow | null {
  const model = tablesModel(props);
  return model.rows[selectedIndexOf(model.rows, model.rowKey, props.viewState)] ?? null;
}

function vacuumKind(vacuum: VacuumProgress): string {
  if (vacuum.wraparound) return 'autovacuum (to prevent wraparound)';
  return vacuum.autovacuum ? 'autovacuum' : 'VACUUM';
}

const vacuumColumns: readonly ColumnSpec<VacuumProgress>[] = [
  { id: 'pid', title: 'pid', width: 7, align: 'right', text: (v) => String(v.pid) },
  { id: 'table', title: 'table', width: 22, text: (v) => (v.schema === null || v.table === null ? `${v.database ?? '?'}: relation ${v.relid ?? '?'}` : `${v.schema}.${v.table}`) },
  { id: 'progress', title: 'progress', width: 8, align: 'right', text: (v) => (v.percent === null ? '-' : `${v.percent.toFixed(1)}%`) },
  { id: 'phase', title: 'phase', width: 20, text: (v) => v.phase ?? '' },
  { id: 'running', title: 'running', width: 7, align: 'right', text: (v) => formatDuration(v.runningSeconds) },
  { id: 'kind', title: 'kind', width: 'flex', minWidth: 10, text: vacuumKind, tone: (v) => (v.wraparound ? 'warning' : undefined) },
];

function summary(snapshot: TablesSnapshot, props: ScreenProps, shown: number): Part[] {
  const bloated = snapshot.tables.filter((stats) => bloatTone(stats) !== undefined).length;
  const autovacuumOff = snapshot.tables.filter((stats) => !stats.autovacuumEnabled).length;
  const parts: Part[] = [
    { text: `${snapshot.database}: ${formatCount(snapshot.totalTables)} tables, the ${snapshot.tables.length} largest listed` },
    { text: ` · ${bloated} bloated`, tone: bloated > 0 ? 'warning' : undefined },
    { text: ` · autovacuum off on ${autovacuumOff}`, tone: autovacuumOff > 0 ? 'critical' : undefined },
  ];
  if (!snapshot.confirmation.available) parts.push({ text: ` · estimates unconfirmed: ${snapshot.confirmation.reason ?? 'pgstattuple unavailable'}`, tone: 'muted' });
  const filter = props.viewState.filter;
  if (filter !== null) parts.push({ text: filter.pattern === null ? ` · filter ${filter.text}: not a valid regular expression` : ` · filter ${filter.text}: ${shown} shown`, tone: 'accent' });
  return parts;
}

function TablesScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const result = resultOf(props.results, 'tables');
  const data = snapshotOf(result);
  const model = tablesModel(props);
  const status = statusHeight(result, theme, 'tables', now);
  if (data === undefined) {
    return (
      <ScreenFrame width={width} height={height}>
        <ProbeStatus result={result} theme={theme} what="tables" width={width} now={now} />
      </ScreenFrame>
    );
  }
  const parts = partsOf(data.snapshot, props);
  const vacuums = data.snapshot.vacuums;
  const sections: Section<TablesRow>[] = [
    { title: 'tables by estimated bloat', columns: model.columns, rows: parts.tables, offset: 0, emptyText: viewState.filter === null ? 'no user table' : 'no table matches the filter' },
    { title: `invalid indexes (${parts.indexes.length}): R rebuilds the selected one`, columns: indexColumns, rows: parts.indexes, offset: parts.tables.length, emptyText: 'none' },
  ];
  const heights = sectionHeights([{ rows: parts.tables.length }, { rows: parts.indexes.length }, { rows: vacuums.length }], height - status - 1);
  const vacuumHeight = heights[2] ?? 0;
  const progressWidth = Math.min(20, Math.max(0, width - 70));
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={result} theme={theme} what="tables" width={width} now={now} />
      <PartsLine parts={summary(data.snapshot, props, parts.tables.length + parts.indexes.length)} width={width} theme={theme} />
      <Sections
        sections={sections}
        heights={heights}
        selectedIndex={selectedIndexOf(model.rows, model.rowKey, viewState)}
        width={width}
        scrollX={viewState.scrollX}
        sort={effectiveSort(viewState, model.defaultSort)}
        rowKey={model.rowKey}
        theme={theme}
      />
      {vacuumHeight > 0 ? (
        <>
          <TextLine text={`vacuums in progress (${vacuums.length})`} width={width} theme={theme} tone="accent" bold />
          {vacuumHeight > 1 ? (
            <Table
              columns={progressWidth > 0 ? [...vacuumColumns.slice(0, 3), { id: 'bar', title: '', width: progressWidth, text: (v) => bar((v.percent ?? 0) / 100, progressWidth, theme) }, ...vacuumColumns.slice(3)] : vacuumColumns}
              rows={vacuums}
              rowKey={(v) => String(v.pid)}
              selectedIndex={-1}
              height={vacuumHeight - 1}
              width={width}
              scrollX={0}
              sort={null}
              emptyText="none"
              theme={theme}
            />
          ) : null}
        </>
      ) : null}
    </ScreenFrame>
  );
}

/** The Tables view. */
export const tablesScreen: ScreenModule<TablesRow> = {
  id: 'tables',
  title: 'Tables',
  model: tablesModel,
  selectionOf: (row): Selection =>
    row.kind === 'table' ? { kind: 'table', schema: row.schema, name: row.table } : { kind: 'index', schema: row.schema, name: row.index, invalid: true },
  Screen: TablesScreen,
};
