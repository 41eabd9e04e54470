/** Pool: who holds the server's connection slots, and PgBouncer's pools (who waits, how long). */
import { Box } from 'ink';
import type { ReactElement } from 'react';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import type { ColumnSpec } from '../components/table-types.js';
import type { Theme } from '../components/theme.js';
import { fit } from '../format/text-table.js';
import { formatCount, formatDuration, formatPercent } from '../format/units.js';
import type { Breakdown, ConnectionsSnapshot } from '../probes/connections.js';
import { resultOf } from '../probes/index.js';
import type { PgBouncerPool, PgBouncerSnapshot } from '../probes/pgbouncer.js';
import type { ProbeResult } from '../probes/types.js';
import { bar, listModel, memoModel, PartsLine, ScreenFrame, statusHeight, TextLine, type Part, type Tone, ModelTable } from './common.js';
import type { ListModel, ScreenModule, ScreenProps } from './types.js';

/** Connection saturation: warning at 80 %, critical at 90 % or fewer than 5 slots left (DESIGN.md §5). */
export const saturationWarning = 0.8;
/** Saturation: critical from this fraction… */
export const saturationCritical = 0.9;
/** …or when fewer slots than this are left. */
export const slotsLeftCritical = 5;
/** PgBouncer: a client waiting longer than this is critical (DESIGN.md §5). */
export const poolerMaxWaitCriticalSeconds = 30;

/** What the Pool screen shows when no PgBouncer is configured. */
export const pgbouncerNotConfigured = 'PgBouncer: not configured (set clusters[].pgbouncer.dsn)';

/** How full the slots are, as a tone. */
export function saturationTone(snapshot: ConnectionsSnapshot): Tone {
  const fraction = snapshot.usedFraction ?? 0;
  if (fraction >= saturationCritical || snapshot.slotsLeft < slotsLeftCritical) return 'critical';
  if (fraction >= saturationWarning) return 'warning';
  return 'ok';
}

function poolTone(pool: PgBouncerPool): Tone | undefined {
  if (pool.maxWaitSeconds >= poolerMaxWaitCriticalSeconds) return 'critical';
  return pool.clWaiting > 0 ? 'warning' : undefined;
}

/** The row key of a pool. */
export function poolKey(pool: PgBouncerPool): string {
  return `${pool.database}/${pool.user}`;
}

/** PgBouncer pool columns. */
export const poolColumns: readonly ColumnSpec<PgBouncerPool>[] = [
  { id: 'pool', title: 'database/user', width: 22, text: poolKey, tone: poolTone },
  { id: 'clActive', title: 'cl_active', width: 9, align: 'right', text: (p) => formatCount(p.clActive), sortValue: (p) => p.clActive },
  { id: 'clWaiting', title: 'cl_waiting', width: 11, align: 'right', text: (p) => formatCount(p.clWaiting), sortValue: (p) => p.clWaiting, tone: poolTone },
  { id: 'svActive', title: 'sv_active', width: 9, align: 'right', text: (p) => formatCount(p.svActive), sortValue: (p) => p.svActive },
  { id: 'svIdle', title: 'sv_idle', width: 7, align: 'right', text: (p) => formatCount(p.svIdle), sortValue: (p) => p.svIdle },
  { id: 'svUsed', title: 'sv_used', width: 7, align: 'right', text: (p) => formatCount(p.svUsed), sortValue: (p) => p.svUsed },
  { id: 'maxwait', title: 'maxwait', width: 7, align: 'right', text: (p) => formatDuration(p.maxWaitSeconds), sortValue: (p) => p.maxWaitSeconds, tone: poolTone },
  { id: 'mode', title: 'mode', width: 'flex', minWidth: 11, text: (p) => p.poolMode ?? '' },
];

/** Clients waiting first. */
export const poolDefaultSort = { column: 'clWaiting', descending: true } as const;

const noPools: readonly PgBouncerPool[] = [];

/** PgBouncer's pools as the Pool screen lists them (the server's slots are not a list). */
export const poolModel = memoModel((props: ScreenProps): ListModel<PgBouncerPool> => {
  const data = snapshotOf(resultOf(props.results, 'pgbouncer'));
  return listModel(data?.snapshot.pools ?? noPools, {
    viewState: props.viewState, columns: poolColumns, rowKey: poolKey, defaultSort: poolDefaultSort, fields: (pool) => [pool.database, pool.user],
  });
});

function slotsLine(snapshot: ConnectionsSnapshot, width: number, theme: Theme): Part[] {
  const tone = saturationTone(snapshot);
  const barWidth = Math.max(0, Math.min(30, width - 70));
  const parts: Part[] = [
    { text: 'slots ' },
    { text: `${formatCount(snapshot.usedSlots)}/${formatCount(snapshot.usableSlots)} used (${formatPercent(snapshot.usedFraction)})`, tone },
  ];
  if (barWidth > 0) parts.push({ text: ` ${bar(Math.min(1, snapshot.usedFraction ?? 0), barWidth, theme)}`, tone });
  parts.push({ text: ` · ${formatCount(snapshot.slotsLeft)} left`, tone: tone === 'ok' ? undefined : tone });
  parts.push({ text: ` · max_connections ${formatCount(snapshot.maxConnections)}, ${formatCount(snapshot.reservedSlots)} reserved`, tone: 'muted' });
  return parts;
}

function count(n: number, one: string, many: string): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

function processesLine(snapshot: ConnectionsSnapshot): string {
  return [
    `${count(snapshot.clientBackends, 'client backend', 'client backends')} (${snapshot.pgwardenSessions} pgwarden)`,
    count(snapshot.walSenders, 'WAL sender', 'WAL senders'),
    count(snapshot.autovacuumWorkers, 'autovacuum worker', 'autovacuum workers'),
    count(snapshot.backgroundWorkers, 'background worker', 'background workers'),
    count(snapshot.otherProcesses, 'other process', 'other processes'),
  ].join(' · ');
}

/** The lines of one small breakdown table: a title, then "name  count" entries, then what was left out. */
export function breakdownLines(title: string, breakdown: Breakdown, width: number, height: number): readonly string[] {
  if (height <= 0 || width <= 0) return [];
  const countWidth = 6;
  const nameWidth = Math.max(1, width - countWidth - 1);
  const entryRoom = height - 1;
  const entries = breakdown.entries;
  const hidden = entries.length > entryRoom ? entries.length - (entryRoom - 1) : 0;
  const shown = hidden > 0 ? entries.slice(0, Math.max(entryRoom - 1, 0)) : entries;
  const hiddenCount = entries.slice(shown.length).reduce((sum, entry) => sum + entry.count, 0) + breakdown.otherCount;
  const lines = [fit(title, width)];
  for (const entry of shown) {
    lines.push(`${fit(entry.name ?? '(none)', nameWidth)} ${fit(formatCount(entry.count), countWidth, 'right')}`);
  }
  if (hiddenCount > 0 && lines.length < height) lines.push(fit(`+${formatCount(hiddenCount)} in other groups`, width));
  if (entries.length === 0 && breakdown.otherCount === 0 && lines.length < height) lines.push(fit('none', width));
  return lines;
}

/** The four breakdowns in a grid: four across when wide, two by two otherwise. */
function Breakdowns({ snapshot, width, height, theme }: { readonly snapshot: ConnectionsSnapshot; readonly width: number; readonly height: number; readonly theme: Theme }): ReactElement | null {
  if (height <= 0) return null;
  const groups: readonly (readonly [string, Breakdown])[] = [
    ['by state', snapshot.byState], ['by application', snapshot.byApplication], ['by database', snapshot.byDatabase], ['by user', snapshot.byUser],
  ];
  const across = width >= 120 ? 4 : 2;
  const gridRows = Math.ceil(groups.length / across);
  const cellHeight = Math.floor(height / gridRows);
  if (cellHeight < 2) return null;
  const cellWidth = Math.floor((width - (across - 1) * 2) / across);
  const rows = Array.from({ length: gridRows }, (_, index) => groups.slice(index * across, index * across + across));
  return (
    <Box flexDirection="column" flexShrink={0}>
      {rows.map((row, rowIndex) => {
        const cells = row.map(([title, breakdown]) => breakdownLines(title, breakdown, cellWidth, cellHeight));
        const lineCount = Math.max(...cells.map((cell) => cell.length));
        return (
          <Box key={rowIndex} flexDirection="column" flexShrink={0}>
            {Array.from({ length: lineCount }, (_, line) => (
              <TextLine
                key={line}
                text={cells.map((cell) => cell[line] ?? ' '.repeat(cellWidth)).map((text) => fit(text, cellWidth)).join('  ')}
                width={width}
                theme={theme}
                tone={line === 0 ? 'header' : undefined}
              />
            ))}
          </Box>
        );
      })}
    </Box>
  );
}

function pgbouncerSummary(snapshot: PgBouncerSnapshot): Part[] {
  const totals = snapshot.totals;
  const waitTone: Tone | undefined = totals.maxWaitSeconds >= poolerMaxWaitCriticalSeconds ? 'critical' : totals.clientsWaiting > 0 ? 'warning' : undefined;
  return [
    { text: snapshot.version ?? 'PgBouncer', tone: 'accent' },
    { text: ` · clients ${formatCount(totals.clientsActive)} active, ` },
    { text: `${formatCount(totals.clientsWaiting)} waiting`, tone: waitTone },
    { text: ` · servers ${formatCount(totals.serversActive)} active, ${formatCount(totals.serversIdle)} idle` },
    { text: ` · max wait ${formatDuration(totals.maxWaitSeconds)}`, tone: waitTone },
  ];
}

/** PgBouncer's part: "not configured" when no DSN is set, else the status and the pools. */
function PgBouncerSection({ props, result, height }: { readonly props: ScreenProps; readonly result: ProbeResult<PgBouncerSnapshot>; readonly height: number }): ReactElement | null {
  const { width, theme, now, viewState } = props;
  if (height <= 0) return null;
  if (result.status === 'unsupported' && result.unsupported.kind === 'config') {
    return <TextLine text={pgbouncerNotConfigured} width={width} theme={theme} tone="muted" />;
  }
  const data = snapshotOf(result);
  const status = statusHeight(result, theme, 'PgBouncer', now);
  const model = poolModel(props);
  return (
    <Box flexDirection="column" flexShrink={0}>
      <ProbeStatus result={result} theme={theme} what="PgBouncer" width={width} now={now} />
      {data === undefined || height - status < 2 ? null : (
        <>
          <PartsLine parts={pgbouncerSummary(data.snapshot)} width={width} theme={theme} />
          <ModelTable
            model={model}
            viewState={viewState}
            height={height - status - 1}
            width={width}
            emptyText={viewState.filter === null ? 'no pool' : 'no pool matches the filter'}
            theme={theme}
          />
        </>
      )}
    </Box>
  );
}

function pgbouncerHeight(result: ProbeResult<PgBouncerSnapshot>, pools: number, theme: Theme, now: Date): number {
  if (result.status === 'unsupported' && result.unsupported.kind === 'config') return 1;
  const status = statusHeight(result, theme, 'PgBouncer', now);
  return snapshotOf(result) === undefined ? status : status + 2 + Math.max(1, pools);
}

function PoolScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now } = props;
  const connections = resultOf(props.results, 'connections');
  const pgbouncer = resultOf(props.results, 'pgbouncer');
  const data = snapshotOf(connections);
  const status = statusHeight(connections, theme, 'connections', now);
  const top = status + (data === undefined ? 0 : 2);
  // PgBouncer gets what its pools need, up to half the screen; the breakdowns the rest.
  const poolNeed = pgbouncerHeight(pgbouncer, poolModel(props).rows.length, theme, now);
  const breakdownRoom = data === undefined ? 0 : Math.max(0, height - top - 1 - Math.min(poolNeed, Math.floor(height / 2)));
  const poolHeight = height - top - breakdownRoom - 1;
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={connections} theme={theme} what="connections" width={width} now={now} />
      {data === undefined ? null : (
        <>
          <PartsLine parts={slotsLine(data.snapshot, width, theme)} width={width} theme={theme} />
          <TextLine text={processesLine(data.snapshot)} width={width} theme={theme} tone="muted" />
          <Breakdowns snapshot={data.snapshot} width={width} height={breakdownRoom} theme={theme} />
        </>
      )}
      <TextLine text=" " width={width} theme={theme} />
      <PgBouncerSection props={props} result={pgbouncer} height={poolHeight} />
    </ScreenFrame>
  );
}

/** The Pool view. */
export const poolScreen: ScreenModule<PgBouncerPool> = {
  id: 'pool',
  title: 'Pool',
  model: poolModel,
  Screen: PoolScreen,
};
