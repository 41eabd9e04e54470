/**
 * Pure helpers behind the Table: sorting rows by a column and choosing the window of rows to
 * render. No React here, so the shell and the screens can call them without rendering.
 */
import type { ColumnSpec } from './table-types.js';

type SortKey = number | string | null;

// One collator for every comparison: the same order as String.prototype.localeCompare() without
// arguments, but without building a collator on each of the ~60,000 comparisons 5,000 rows need.
const collator = new Intl.Collator();

function keyOf<R>(column: ColumnSpec<R>, row: R): SortKey {
  const value = column.sortValue !== undefined ? column.sortValue(row) : column.text(row);
  // NaN has no place in an order: it sorts with the nulls.
  if (typeof value === 'number' && Number.isNaN(value)) return null;
  return value;
}

/** Compares two non-null keys ascending; numbers come before strings when a column mixes them. */
function compareKeys(a: number | string, b: number | string): number {
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  return collator.compare(a, b);
}

/**
 * Rows sorted by sort.column: stable (ties keep their order), nulls last in both directions,
 * numbers numerically, strings by locale. Unknown column or no sort: the rows unchanged.
 */
export function sortRows<R>(
  rows: readonly R[],
  columns: readonly ColumnSpec<R>[],
  sort: { readonly column: string; readonly descending: boolean } | null,
): readonly R[] {
  if (sort === null) return rows;
  const column = columns.find((candidate) => candidate.id === sort.column);
  if (column === undefined) return rows;
  const direction = sort.descending ? -1 : 1;
  // Keys computed once per row, not once per comparison: sortValue may format or parse.
  const decorated = rows.map((row, index) => ({ row, index, key: keyOf(column, row) }));
  decorated.sort((a, b) => {
    if (a.key === null || b.key === null) {
      if (a.key === null && b.key === null) return a.index - b.index;
      return a.key === null ? 1 : -1;
    }
    // The index tie-break keeps the sort stable in the descending direction too.
    return direction * compareKeys(a.key, b.key) || a.index - b.index;
  });
  return decorated.map((entry) => entry.row);
}

/**
 * The index of the first row to render so that the selected row is visible, for `height` row
 * lines (header excluded). Stateless, so it cannot scroll "minimally" from a previous position;
 * the rule is instead: keep the selection in the middle of the window (like vim's scrolloff=999),
 * clamped so that the window never runs past either end of the rows. Neighbours above and below
 * the selection stay in view, and the same selection always gives the same window.
 */
export function visibleWindow(rowCount: number, selectedIndex: number, height: number): number {
  if (height <= 0 || rowCount <= height) return 0;
  const selected = Math.min(Math.max(selectedIndex, 0), rowCount - 1);
  const first = selected - Math.floor((height - 1) / 2);
  return Math.min(Math.max(first, 0), rowCount - height);
}
