/**
 * A table that renders only the rows that fit: its cost depends on its height, not on the number
 * of rows (5,000 sessions render as fast as 50). Every line is exactly `width` columns, measured
 * with displayWidth, so wide characters never push a line into wrapping.
 */
import { Box, Text } from 'ink';
import type { ReactElement, ReactNode } from 'react';
import { displayWidth, fit, truncate } from '../format/text-table.js';
import type { ColumnSpec, TableProps } from './table-types.js';
import type { Theme } from './theme.js';
import { visibleWindow } from './table-sort.js';
import { colours } from './Styled.js';

export { sortRows, visibleWindow } from './table-sort.js';

type Tone = 'ok' | 'warning' | 'critical' | 'muted' | 'stale' | 'header';

/** A run of text in one tone; undefined tone is the terminal's default colour. */
export interface Segment {
  readonly text: string;
  readonly tone: Tone | undefined;
}

/** A column placed on screen: its spec and its width in terminal columns. */
export interface PlacedColumn<R> {
  readonly column: ColumnSpec<R>;
  readonly width: number;
}

/** Cuts text to `width` columns with the theme's ellipsis, then pads it to exactly `width`. */
export function fitCell(text: string, width: number, theme: Theme, align: 'left' | 'right' = 'left'): string {
  if (width <= 0) return '';
  return fit(truncate(text, width, theme.symbols.ellipsis), width, align);
}

/** The width of the marker gutter: '>' for the selection, plus a tag column when rows can be tagged. */
export function gutterWidth(taggable: boolean): number {
  // Two columns when tagging is possible: a selected row that is also tagged must show both
  // marks, which one column cannot do without colour.
  return taggable ? 2 : 1;
}

// A column narrower than this is noise: it is left out rather than shown as "…".
const minimumPartialWidth = 3;

function naturalWidth<R>(column: ColumnSpec<R>): number {
  if (column.width !== 'flex') return Math.max(0, column.width);
  // One more than the title leaves room for the sort indicator.
  return Math.max(column.minWidth ?? displayWidth(column.title) + 1, 1);
}

/**
 * The columns that fit in `room` columns: the first one frozen, then the others from `scrollX`
 * on; flex columns share what the fixed ones leave; one space between columns.
 */
export function placeColumns<R>(columns: readonly ColumnSpec<R>[], room: number, scrollX: number): readonly PlacedColumn<R>[] {
  const [first, ...others] = columns;
  if (first === undefined || room <= 0) return [];
  // At least one scrolling column stays in view, however far the user scrolls.
  const skip = Math.min(Math.max(scrollX, 0), Math.max(others.length - 1, 0));
  const candidates = [first, ...others.slice(skip)];
  const placed: { column: ColumnSpec<R>; width: number }[] = [];
  let used = 0;
  for (const column of candidates) {
    const gap = placed.length === 0 ? 0 : 1;
    const want = naturalWidth(column);
    if (used + gap + want <= room) {
      placed.push({ column, width: want });
      used += gap + want;
      continue;
    }
    const left = room - used - gap;
    if (placed.length === 0 || left >= minimumPartialWidth) {
      placed.push({ column, width: Math.max(left, 0) });
      used += gap + Math.max(left, 0);
    }
    break;
  }
  const flex = placed.filter((entry) => entry.column.width === 'flex');
  const spare = room - used;
  if (flex.length > 0 && spare > 0) {
    const share = Math.floor(spare / flex.length);
    // The remainder goes to the first flex columns, one column each.
    let extra = spare - share * flex.length;
    for (const entry of flex) {
      entry.width += share + (extra > 0 ? 1 : 0);
      if (extra > 0) extra -= 1;
    }
  }
  return placed;
}

function headerSegments<R>(placed: readonly PlacedColumn<R>[], sort: TableProps<R>['sort'], theme: Theme): string {
  return placed
    .map(({ column, width }, index) => {
      const gap = index === 0 ? '' : ' ';
      if (sort === null || sort.column !== column.id || width < 2) return gap + fitCell(column.title, width, theme, column.align);
      // The indicator is never cut off: the title gives way.
      const indicator = sort.descending ? theme.symbols.sortDescending : theme.symbols.sortAscending;
      const title = truncate(column.title, width - displayWidth(indicator), theme.symbols.ellipsis) + indicator;
      return gap + fitCell(title, width, theme, column.align);
    })
    .join('');
}

function rowSegments<R>(placed: readonly PlacedColumn<R>[], row: R, theme: Theme): Segment[] {
  const segments: Segment[] = [];
  placed.forEach(({ column, width }, index) => {
    const text = (index === 0 ? '' : ' ') + fitCell(column.text(row), width, theme, column.align);
    const tone = column.tone?.(row);
    const last = segments[segments.length - 1];
    // Neighbouring cells of one tone share a Text node: fewer nodes, faster frames.
    if (last !== undefined && last.tone === tone) segments[segments.length - 1] = { text: last.text + text, tone };
    else segments.push({ text, tone });
  });
  return segments;
}

/** The lines a table shows, as plain data: what the component renders, and what tests measure. */
export interface TableLayout {
  readonly header: string;
  readonly rows: readonly {
    readonly key: string;
    readonly selected: boolean;
    readonly tagged: boolean;
    readonly gutter: string;
    readonly segments: readonly Segment[];
  }[];
  /** Shown instead of rows when there are none (already fitted to the width). */
  readonly empty: string | null;
}

/** Lays out the visible window of a table; only the rows in the window are read. */
export function layoutTable<R>(props: TableProps<R> & { readonly theme: Theme }): TableLayout {
  const { columns, rows, rowKey, selectedIndex, height, width, scrollX, sort, tagged, emptyText, theme } = props;
  const gutter = Math.min(gutterWidth(tagged !== undefined), Math.max(width, 0));
  const room = width - gutter;
  const placed = placeColumns(columns, room, scrollX);
  const used = placed.reduce((sum, entry, index) => sum + entry.width + (index === 0 ? 0 : 1), 0);
  const tail = ' '.repeat(Math.max(room - used, 0));
  const blankGutter = ' '.repeat(gutter);
  if (height <= 0 || width <= 0) return { header: '', rows: [], empty: null };
  const header = blankGutter + headerSegments(placed, sort, theme) + tail;
  if (rows.length === 0) {
    return { header, rows: [], empty: height > 1 ? blankGutter + fitCell(emptyText, room, theme) : null };
  }
  const lines = height - 1;
  const first = visibleWindow(rows.length, selectedIndex, lines);
  const window = rows.slice(first, first + lines);
  return {
    header,
    empty: null,
    rows: window.map((row, offset) => {
      const key = rowKey(row);
      const selected = first + offset === selectedIndex;
      const isTagged = tagged?.has(key) ?? false;
      const marks = (selected ? '>' : ' ') + (gutter > 1 ? (isTagged ? theme.symbols.tagged : ' ') : '');
      const segments = rowSegments(placed, row, theme);
      segments.push({ text: tail, tone: undefined });
      return { key, selected, tagged: isTagged, gutter: fitCell(marks, gutter, theme), segments };
    }),
  };
}

/** A sortable table with a frozen first column, horizontal scroll and a visible window of rows. */
export function Table<R>(props: TableProps<R> & { readonly theme: Theme }): ReactElement {
  const { theme, width } = props;
  const layout = layoutTable(props);
  const colour = (tone: Tone | undefined): string | undefined => (tone === undefined ? undefined : theme.color[tone]);
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} flexShrink={0}>
      {props.height > 0 && width > 0 ? (
        <Text {...colours(theme.color.header)} bold wrap="truncate">
          {layout.header}
        </Text>
      ) : null}
      {layout.empty !== null ? (
        <Text {...colours(theme.color.muted)} wrap="truncate">
          {layout.empty}
        </Text>
      ) : null}
      {layout.rows.map((row) => {
        if (row.selected) {
          // Tones would be unreadable on the selection background: the whole line takes the selection colours.
          return (
            <Text key={row.key} {...colours(theme.color.selectedText, theme.color.selectedBackground)} bold wrap="truncate">
              {row.gutter + row.segments.map((segment) => segment.text).join('')}
            </Text>
          );
        }
        const children: ReactNode[] = [row.tagged ? <Text key="gutter" {...colours(theme.color.accent)}>{row.gutter}</Text> : row.gutter];
        row.segments.forEach((segment, index) => {
          const color = colour(segment.tone);
          children.push(color === undefined ? segment.text : <Text key={index} color={color}>{segment.text}</Text>);
        });
        return (
          <Text key={row.key} wrap="truncate">
            {children}
          </Text>
        );
      })}
    </Box>
  );
}
