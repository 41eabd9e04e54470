/** The contract of the Table component (src/components/Table.tsx). */
import type { Theme } from './theme.js';

export interface ColumnSpec<R> {
  /** Stable id, used for sorting (SortState.column). */
  readonly id: string;
  readonly title: string;
  /** Width in terminal columns; a flex column takes the room left (at least minWidth). */
  readonly width: number | 'flex';
  readonly minWidth?: number;
  readonly align?: 'left' | 'right';
  /** The text shown (already formatted: bytes, durations…). */
  text(this: void, row: R): string;
  /** The value sorted on; null sorts last whatever the direction. Defaults to text(). */
  sortValue?(this: void, row: R): number | string | null;
  /** A theme colour token name for this cell, e.g. 'warning' (see Theme['color']). */
  tone?(this: void, row: R): 'ok' | 'warning' | 'critical' | 'muted' | 'stale' | undefined;
}

export interface TableProps<R> {
  readonly columns: readonly ColumnSpec<R>[];
  /** Already filtered and sorted (sortRows() does it); only the visible window is rendered. */
  readonly rows: readonly R[];
  rowKey(this: void, row: R): string;
  /** Index into rows of the selected row, or -1 for none. */
  readonly selectedIndex: number;
  /** Rows of the area including the header line. */
  readonly height: number;
  readonly width: number;
  /** Columns scrolled off to the left; the first (key) column is frozen and never scrolls. */
  readonly scrollX: number;
  readonly sort: { readonly column: string; readonly descending: boolean } | null;
  /** Keys of tagged rows, marked in the gutter. */
  readonly tagged?: ReadonlySet<string>;
  /** Shown instead of rows when there are none, e.g. "no session waits on a lock". */
  readonly emptyText: string;
  readonly theme: Theme;
}
