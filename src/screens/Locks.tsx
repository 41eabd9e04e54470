/** Locks: the blocking tree, root blockers first, a waiter under every session it waits for. */
import type { ReactElement } from 'react';
import type { Filter } from '../app/state.js';
import { matchesFilter } from '../app/state.js';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import { sortRows } from '../components/table-sort.js';
import type { ColumnSpec } from '../components/table-types.js';
import type { Theme } from '../components/theme.js';
import { displayWidth } from '../format/text-table.js';
import { formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import { buildLockTree, type LockTreeNode, type LockWaiter, type LocksSnapshot, type RootBlocker } from '../probes/locks.js';
import { effectiveSort, memoModel, PartsLine, ScreenFrame, selectedIndexOf, shortState, statusHeight, type Part, type Tone, ModelTable } from './common.js';
import type { ListModel, ScreenModule, ScreenProps, Selection } from './types.js';

/** Lock waits: warning after a minute, critical after five (DESIGN.md §5). */
export const lockWaitWarningSeconds = 60;
/** Lock waits: critical from here. */
export const lockWaitCriticalSeconds = 5 * 60;
/** Sessions behind one blocker that make it critical (DESIGN.md §5). */
export const blockerCriticalWaiters = 10;

/** One line of the blocking tree. */
export interface LockRow {
  /** The path of pids from the root ("101/201/202"): the same waiter under two blockers is two rows. */
  readonly key: string;
  /** The session this line is about (0 for a prepared transaction): what actions target. */
  readonly pid: number;
  readonly depth: number;
  /** The tree drawing before the pid ("│  └─ "). */
  readonly prefix: string;
  readonly waiter: LockWaiter | null;
  readonly blocker: RootBlocker | null;
  /** The pid is already its own ancestor here: a deadlock being resolved. */
  readonly cycle: boolean;
  /** Shown in full elsewhere in the tree. */
  readonly collapsed: boolean;
  /** Kept only to show where a matching row sits in the tree (it does not match the filter itself). */
  readonly context: boolean;
}

function waitTone(seconds: number | null): Tone | undefined {
  if (seconds === null) return undefined;
  if (seconds >= lockWaitCriticalSeconds) return 'critical';
  if (seconds >= lockWaitWarningSeconds) return 'warning';
  return undefined;
}

function rowTone(row: LockRow): Tone | undefined {
  if (row.context) return 'muted';
  if (row.cycle) return 'critical';
  if (row.blocker !== null) return row.blocker.waitingBehind >= blockerCriticalWaiters ? 'critical' : 'warning';
  return waitTone(row.waiter?.waitSeconds ?? null);
}

function waitedText(row: LockRow): string {
  if (row.cycle) return 'deadlock';
  if (row.collapsed) return 'see above';
  if (row.blocker !== null) return `blocks ${row.blocker.waitingBehind}`;
  return row.waiter === null ? '' : formatDuration(row.waiter.waitSeconds);
}

function waitedSort(row: LockRow): number | null {
  if (row.blocker !== null) return row.blocker.waitingBehind;
  return row.waiter?.waitSeconds ?? null;
}

function pidText(row: LockRow): string {
  return row.prefix + (row.pid === 0 ? 'prepared' : String(row.pid));
}

const field = (row: LockRow, pick: (session: LockWaiter | RootBlocker) => string | null): string => {
  const session = row.waiter ?? row.blocker;
  return session === null ? '' : (pick(session) ?? '');
};

/** The columns after the tree column (whose width follows the tree's depth). */
const restColumns: readonly ColumnSpec<LockRow>[] = [
  { id: 'waited', title: 'waited', width: 9, align: 'right', text: waitedText, sortValue: waitedSort, tone: rowTone },
  // "Lock" ends every mode name: dropping it keeps the column narrow.
  { id: 'mode', title: 'mode', width: 15, text: (row) => (row.waiter?.mode ?? '').replace(/Lock$/, '') },
  { id: 'relation', title: 'relation', width: 16, text: (row) => row.waiter?.relation ?? row.waiter?.lockType ?? '' },
  { id: 'user', title: 'user', width: 9, text: (row) => field(row, (s) => s.user) },
  { id: 'application', title: 'application', width: 11, text: (row) => field(row, (s) => s.application) },
  { id: 'state', title: 'state', width: 13, text: (row) => shortState(row.waiter?.state ?? row.blocker?.state ?? null) },
  { id: 'query', title: 'query', width: 'flex', minWidth: 20, text: (row) => field(row, (s) => s.query) },
];

function columnsFor(rows: readonly LockRow[]): readonly ColumnSpec<LockRow>[] {
  const widest = rows.reduce((max, row) => Math.max(max, displayWidth(pidText(row))), 0);
  const pid: ColumnSpec<LockRow> = {
    id: 'pid', title: 'pid', width: Math.min(Math.max(widest, 5), 24), text: pidText, sortValue: (row) => row.pid, tone: rowTone,
  };
  return [pid, ...restColumns];
}

/** Root blockers first (most sessions behind them), waiters under them longest wait first. */
export const locksDefaultSort = { column: 'waited', descending: true } as const;

function fieldsOf(node: LockTreeNode): readonly (string | null)[] {
  const session = node.waiter ?? node.blocker;
  return session === null ? [] : [session.database, session.user, session.application, session.state];
}

/** Whether a node or one of its descendants passes the filter (the path to a match is kept). */
function visible(node: LockTreeNode, filter: Filter | null, memo: Map<LockTreeNode, boolean>): boolean {
  const known = memo.get(node);
  if (known !== undefined) return known;
  const result = matchesFilter(filter, fieldsOf(node)) || node.children.some((child) => visible(child, filter, memo));
  memo.set(node, result);
  return result;
}

/**
 * The tree as rows. Siblings are sorted by the view's sort (the tree shape is kept: sorting moves
 * whole subtrees), then drawn with the theme's branches.
 */
export function lockRows(snapshot: LocksSnapshot, theme: Theme, filter: Filter | null, sort: { readonly column: string; readonly descending: boolean }): readonly LockRow[] {
  const tree = buildLockTree(snapshot);
  const memo = new Map<LockTreeNode, boolean>();
  const { treeBranch, treeLast, treePipe } = theme.symbols;
  const blank = ' '.repeat(displayWidth(treePipe));
  // The sort's columns do not depend on the tree column's width: measure with a provisional one.
  const sortColumns = columnsFor([]);
  const out: LockRow[] = [];
  const walk = (nodes: readonly LockTreeNode[], parentKey: string | null, indent: string): void => {
    const shown = nodes.filter((node) => visible(node, filter, memo));
    const drafts = shown.map((node) => ({ node, row: rowOf(node, parentKey, '', filter) }));
    const rows = drafts.map((draft) => draft.row);
    // Root blockers come first whatever the sort: deadlock cycles (roots without a blocker) after them.
    const sorted = parentKey === null
      ? [...sortRows(rows.filter((row) => row.blocker !== null), sortColumns, sort), ...sortRows(rows.filter((row) => row.blocker === null), sortColumns, sort)]
      : sortRows(rows, sortColumns, sort);
    sorted.forEach((row, index) => {
      const node = drafts.find((draft) => draft.row === row)?.node;
      if (node === undefined) return;
      const last = index === sorted.length - 1;
      const prefix = parentKey === null ? '' : `${indent}${last ? treeLast : treeBranch} `;
      out.push({ ...row, prefix });
      const childIndent = parentKey === null ? '' : `${indent}${last ? blank : treePipe} `;
      walk(node.children, row.key, childIndent);
    });
  };
  walk(tree.roots, null, '');
  return out;
}

function rowOf(node: LockTreeNode, parentKey: string | null, prefix: string, filter: Filter | null): LockRow {
  return {
    key: parentKey === null ? String(node.pid) : `${parentKey}/${node.pid}`,
    pid: node.pid,
    depth: node.depth,
    prefix,
    waiter: node.waiter,
    blocker: node.blocker,
    cycle: node.cycle,
    collapsed: node.collapsed,
    context: filter !== null && filter.pattern !== null && !matchesFilter(filter, fieldsOf(node)),
  };
}

const noRows: readonly LockRow[] = [];

/** The blocking tree as the Locks screen lists it. */
export const locksModel = memoModel((props: ScreenProps): ListModel<LockRow> => {
  const data = snapshotOf(resultOf(props.results, 'locks'));
  const sort = effectiveSort(props.viewState, locksDefaultSort);
  const rows = data === undefined ? noRows : lockRows(data.snapshot, props.theme, props.viewState.filter, sort);
  return { rows, columns: columnsFor(rows), rowKey: (row) => row.key, defaultSort: locksDefaultSort };
});

/** The pid of the selected row of the Locks screen (for cancel and terminate), or null. */
export function selectedPid(props: ScreenProps): number | null {
  const model = locksModel(props);
  const row = model.rows[selectedIndexOf(model.rows, model.rowKey, props.viewState)];
  return row === undefined || row.pid === 0 ? null : row.pid;
}

function summary(snapshot: LocksSnapshot, props: ScreenProps, shown: number): Part[] {
  const longest = snapshot.waiters.reduce((max, waiter) => Math.max(max, waiter.waitSeconds ?? 0), 0);
  const parts: Part[] = [
    { text: `${snapshot.waiters.length} ${snapshot.waiters.length === 1 ? 'session waits' : 'sessions wait'} on locks`, tone: 'warning' },
    { text: ` behind ${snapshot.rootBlockers.length} root ${snapshot.rootBlockers.length === 1 ? 'blocker' : 'blockers'}` },
    { text: ` · longest wait ${formatDuration(longest)}`, tone: waitTone(longest) },
  ];
  const filter = props.viewState.filter;
  if (filter !== null) parts.push({ text: filter.pattern === null ? ` · filter ${filter.text}: not a valid regular expression` : ` · filter ${filter.text}: ${shown} rows`, tone: 'accent' });
  return parts;
}

function LocksScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const result = resultOf(props.results, 'locks');
  const data = snapshotOf(result);
  const model = locksModel(props);
  const status = statusHeight(result, theme, 'locks', now);
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={result} theme={theme} what="locks" width={width} now={now} />
      {data === undefined ? null : data.snapshot.waiters.length === 0 ? (
        <PartsLine parts={[{ text: 'no session waits on a lock', tone: 'ok' }]} width={width} theme={theme} />
      ) : (
        <>
          <PartsLine parts={summary(data.snapshot, props, model.rows.length)} width={width} theme={theme} />
          <ModelTable
            model={model}
            viewState={viewState}
            height={height - status - 1}
            width={width}
            emptyText="no lock wait matches the filter"
            theme={theme}
          />
        </>
      )}
    </ScreenFrame>
  );
}

/** The Locks view. */
export const locksScreen: ScreenModule<LockRow> = {
  id: 'locks',
  title: 'Locks',
  model: locksModel,
  selectionOf: (row): Selection => (row.pid === 0 ? { kind: 'none' } : { kind: 'session', pid: row.pid }),
  Screen: LocksScreen,
};
