/**
 * Queries: pg_stat_statements, the statements that cost the most time right now (rates over the
 * interval between two snapshots; pgwarden never resets the counters).
 */
import type { ReactElement } from 'react';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import type { ColumnSpec } from '../components/table-types.js';
import { formatCount, formatDuration, formatPercent, formatRate } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Statement, StatementsSnapshot } from '../probes/statements.js';
import { formatMillis, listModel, memoModel, PartsLine, ScreenFrame, statusHeight, type Part, type Tone, ModelTable } from './common.js';
import type { ListModel, ScreenModule, ScreenProps, Selection } from './types.js';

/** Slow queries: mean ≥ 100 ms is a warning, ≥ 1 s critical (DESIGN.md §5; the baseline part is the alert's). */
export const slowMeanWarningMs = 100;
/** Mean execution time: critical from here. */
export const slowMeanCriticalMs = 1000;

/** The key of a statement, as the detail pane identifies it (DetailTarget 'statement'). */
export function statementKey(statement: Statement): string {
  return `${String(statement.queryId)}:${statement.userId}:${statement.dbId}:${String(statement.toplevel)}`;
}

/**
 * Row keys for a snapshot's statements. Statements hidden from this role (no queryid) can share a
 * key: they are numbered in snapshot order so that every row stays distinct.
 */
function rowKeys(statements: readonly Statement[]): (statement: Statement) => string {
  const keys = new Map<Statement, string>();
  const seen = new Map<string, number>();
  for (const statement of statements) {
    const key = statementKey(statement);
    const count = seen.get(key) ?? 0;
    seen.set(key, count + 1);
    keys.set(statement, count === 0 ? key : `${key}#${count}`);
  }
  return (statement) => keys.get(statement) ?? statementKey(statement);
}

function meanTone(statement: Statement): Tone | undefined {
  const mean = statement.interval?.meanExecMs ?? null;
  if (mean === null) return undefined;
  if (mean >= slowMeanCriticalMs) return 'critical';
  if (mean >= slowMeanWarningMs) return 'warning';
  return undefined;
}

function hitFraction(statement: Statement): number | null {
  const interval = statement.interval;
  if (interval === null) return null;
  const blocks = interval.sharedBlksHit + interval.sharedBlksRead;
  return blocks > 0 ? interval.sharedBlksHit / blocks : null;
}

function tempBlocks(statement: Statement): number | null {
  const interval = statement.interval;
  return interval === null ? null : interval.tempBlksRead + interval.tempBlksWritten;
}

function rowsPerCall(statement: Statement): number | null {
  const interval = statement.interval;
  return interval === null || interval.calls === 0 ? null : interval.rows / interval.calls;
}

/**
 * The statement columns. All but "total" are over the last interval: what costs now, not what cost
 * the most since the last reset weeks ago.
 */
export const statementColumns: readonly ColumnSpec<Statement>[] = [
  { id: 'query', title: 'query', width: 'flex', minWidth: 30, text: (s) => s.query, tone: meanTone },
  {
    id: 'timePerSecond', title: 'time/s', width: 8, align: 'right',
    text: (s) => (s.interval === null ? '-' : formatMillis(s.interval.execMsPerSecond)), sortValue: (s) => s.interval?.execMsPerSecond ?? null,
  },
  { id: 'callsPerSecond', title: 'calls/s', width: 8, align: 'right', text: (s) => formatRate(s.interval?.callsPerSecond ?? null), sortValue: (s) => s.interval?.callsPerSecond ?? null },
  { id: 'mean', title: 'mean', width: 8, align: 'right', text: (s) => formatMillis(s.interval?.meanExecMs ?? null), sortValue: (s) => s.interval?.meanExecMs ?? null, tone: meanTone },
  { id: 'total', title: 'total', width: 7, align: 'right', text: (s) => formatDuration(s.totalExecMs / 1000), sortValue: (s) => s.totalExecMs },
  { id: 'rows', title: 'rows/call', width: 9, align: 'right', text: (s) => { const r = rowsPerCall(s); return r === null ? '-' : formatCount(r); }, sortValue: rowsPerCall },
  { id: 'hit', title: 'hit%', width: 6, align: 'right', text: (s) => formatPercent(hitFraction(s)), sortValue: hitFraction },
  { id: 'temp', title: 'temp blks', width: 9, align: 'right', text: (s) => formatCount(tempBlocks(s)), sortValue: tempBlocks, tone: (s) => ((tempBlocks(s) ?? 0) > 0 ? 'warning' : undefined) },
  { id: 'user', title: 'user', width: 9, text: (s) => s.user ?? '', sortValue: (s) => s.user },
  { id: 'database', title: 'database', width: 9, text: (s) => s.database ?? '', sortValue: (s) => s.database },
];

/** Execution time per second over the interval, the most first. */
export const queriesDefaultSort = { column: 'timePerSecond', descending: true } as const;

const noStatements: readonly Statement[] = [];

/** The statements as the Queries screen lists them. */
export const queriesModel = memoModel((props: ScreenProps): ListModel<Statement> => {
  const statements = snapshotOf(resultOf(props.results, 'statements'))?.snapshot.statements ?? noStatements;
  // Statements have no application, state or client: the filter matches database and user.
  return listModel(statements, {
    viewState: props.viewState, columns: statementColumns, rowKey: rowKeys(statements), defaultSort: queriesDefaultSort, fields: (s) => [s.database, s.user],
  });
});

/** Why rates are missing, when they are: a reset by someone else, or the first snapshot. */
export function ratesBanner(snapshot: StatementsSnapshot): Part | null {
  if (snapshot.reset) {
    return { text: 'pg_stat_statements was reset: no rates for this interval, back with the next snapshot', tone: 'warning' };
  }
  if (snapshot.intervalSeconds === null) return { text: 'rates appear with the second snapshot', tone: 'muted' };
  return null;
}

function summary(snapshot: StatementsSnapshot, props: ScreenProps, shown: number): Part[] {
  const parts: Part[] = [
    { text: `${formatCount(snapshot.totalCount)} statements tracked` },
    { text: snapshot.capacity === null ? '' : ` of ${formatCount(snapshot.capacity)} max`, tone: snapshot.capacity !== null && snapshot.totalCount >= snapshot.capacity ? 'warning' : undefined },
    { text: ` · top ${snapshot.statements.length} by total time` },
    { text: snapshot.intervalSeconds === null ? '' : ` · rates over ${formatDuration(snapshot.intervalSeconds)}` },
    { text: (snapshot.deallocDelta ?? 0) > 0 ? ` · ${formatCount(snapshot.deallocDelta)} evicted` : '', tone: 'warning' },
  ];
  const filter = props.viewState.filter;
  if (filter !== null) parts.push({ text: filter.pattern === null ? ` · filter ${filter.text}: not a valid regular expression` : ` · filter ${filter.text}: ${shown} shown`, tone: 'accent' });
  return parts;
}

function QueriesScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const result = resultOf(props.results, 'statements');
  const data = snapshotOf(result);
  const model = queriesModel(props);
  const status = statusHeight(result, theme, 'statements', now);
  const banner = data === undefined ? null : ratesBanner(data.snapshot);
  const top = status + 1 + (banner === null ? 0 : 1);
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={result} theme={theme} what="statements" width={width} now={now} />
      {data === undefined ? null : (
        <>
          <PartsLine parts={summary(data.snapshot, props, model.rows.length)} width={width} theme={theme} />
          {banner === null ? null : <PartsLine parts={[banner]} width={width} theme={theme} />}
          <ModelTable
            model={model}
            viewState={viewState}
            height={height - top}
            width={width}
            emptyText={viewState.filter === null ? 'no statement recorded yet' : 'no statement matches the filter'}
            theme={theme}
          />
        </>
      )}
    </ScreenFrame>
  );
}

/** The Queries view. */
export const queriesScreen: ScreenModule<Statement> = {
  id: 'queries',
  title: 'Queries',
  model: queriesModel,
  selectionOf: (statement): Selection => ({ kind: 'statement', key: statementKey(statement) }),
  Screen: QueriesScreen,
};
