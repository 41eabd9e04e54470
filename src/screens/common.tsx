/**
 * What every screen shares: the list model (filter, sort, selection), the screen frame that never
 * outgrows its area, fitted text lines, and stacked table sections for screens with several lists.
 */
import { Box } from 'ink';
import type { ReactElement, ReactNode } from 'react';
import type { Filter, ViewState } from '../app/state.js';
import { matchesFilter } from '../app/state.js';
import { Line, Span } from '../components/Styled.js';
import { Table } from '../components/Table.js';
import { sortRows } from '../components/table-sort.js';
import type { ColumnSpec } from '../components/table-types.js';
import type { Theme } from '../components/theme.js';
import { displayWidth, truncate } from '../format/text-table.js';
import { formatDuration } from '../format/units.js';
import { probeStatusLines } from '../components/ProbeStatus.js';
import type { ProbeResult } from '../probes/types.js';
import type { ListModel, ScreenProps } from './types.js';

/** The theme tones a screen colours text with. */
export type Tone = 'ok' | 'warning' | 'critical' | 'muted' | 'stale';

/** The sort in force: the user's, else the screen's default. */
export function effectiveSort(viewState: ViewState, defaultSort: ListModel<unknown>['defaultSort']): { readonly column: string; readonly descending: boolean } {
  return viewState.sort ?? defaultSort;
}

/**
 * The index of the selected row: the row whose key is viewState.selectedKey, else
 * viewState.selectedIndex clamped to the rows (the selected row left, its neighbour takes over);
 * -1 without rows.
 */
export function selectedIndexOf<R>(rows: readonly R[], rowKey: (row: R) => string, viewState: ViewState): number {
  if (rows.length === 0) return -1;
  if (viewState.selectedKey !== null) {
    const key = viewState.selectedKey;
    const index = rows.findIndex((row) => rowKey(row) === key);
    if (index >= 0) return index;
  }
  return Math.max(0, Math.min(viewState.selectedIndex, rows.length - 1));
}

/** The selected row of a model, or undefined when the list is empty. */
export function selectedRowOf<R>(model: ListModel<R>, viewState: ViewState): R | undefined {
  return model.rows[selectedIndexOf(model.rows, model.rowKey, viewState)];
}

/** Rows that pass the filter over the fields `fields` gives for each. */
export function filterRows<R>(rows: readonly R[], filter: Filter | null, fields: (row: R) => readonly (string | null)[]): readonly R[] {
  if (filter === null || filter.pattern === null) return rows;
  return rows.filter((row) => matchesFilter(filter, fields(row)));
}

/** A list model: rows filtered, then sorted by the view's sort or the default. */
export function listModel<R>(
  rows: readonly R[],
  options: {
    readonly viewState: ViewState;
    readonly columns: readonly ColumnSpec<R>[];
    readonly rowKey: (row: R) => string;
    readonly defaultSort: ListModel<R>['defaultSort'];
    readonly fields: (row: R) => readonly (string | null)[];
  },
): ListModel<R> {
  const filtered = filterRows(rows, options.viewState.filter, options.fields);
  const sorted = sortRows(filtered, options.columns, effectiveSort(options.viewState, options.defaultSort));
  return { rows: sorted, columns: options.columns, rowKey: options.rowKey, defaultSort: options.defaultSort };
}

/**
 * Remembers the last model per screen: the shell asks for the model (cursor keys) and the Screen
 * renders it in the same frame; with 5,000 sessions filtering and sorting twice would double the
 * frame time. Same inputs (results, view state, theme), same model, so purity is kept.
 */
export function memoModel<R>(build: (props: ScreenProps) => ListModel<R>): (props: ScreenProps) => ListModel<R> {
  let last: { results: ScreenProps['results']; viewState: ViewState; theme: Theme; model: ListModel<R> } | undefined;
  return (props) => {
    if (last !== undefined && last.results === props.results && last.viewState === props.viewState && last.theme === props.theme) return last.model;
    const model = build(props);
    last = { results: props.results, viewState: props.viewState, theme: props.theme, model };
    return model;
  };
}

/** The area of a screen: exactly width × height; anything taller is cut, never pushed out of the frame. */
export function ScreenFrame({ width, height, children }: { readonly width: number; readonly height: number; readonly children?: ReactNode }): ReactElement {
  return (
    // No overflow clipping here: screens fit their content to width and height, and the shell's body
    // box clips; clipping twice cost 4–5 ms a frame at 200×50.
    <Box flexDirection="column" width={Math.max(width, 1)} height={Math.max(height, 1)}>
      {children}
    </Box>
  );
}

/** One line of text cut to `width` columns with the theme's ellipsis. */
export function TextLine({ text, width, theme, tone, bold }: { readonly text: string; readonly width: number; readonly theme: Theme; readonly tone?: Tone | 'accent' | 'header' | undefined; readonly bold?: boolean }): ReactElement {
  return (
    <Line color={tone === undefined ? theme.color.text : theme.color[tone]} bold={bold ?? false}>
      {truncate(text, Math.max(width, 0), theme.symbols.ellipsis)}
    </Line>
  );
}

/** A piece of a line in one tone. */
export interface Part {
  readonly text: string;
  readonly tone?: Tone | 'accent' | 'header' | undefined;
}

/** One line made of toned parts, cut to `width` columns as a whole. */
export function PartsLine({ parts, width, theme }: { readonly parts: readonly Part[]; readonly width: number; readonly theme: Theme }): ReactElement {
  const fitted = fitParts(parts, width, theme.symbols.ellipsis);
  return (
    <Line>
      {fitted.map((part, index) => (
        <Span key={index} color={part.tone === undefined ? theme.color.text : theme.color[part.tone]}>
          {part.text}
        </Span>
      ))}
    </Line>
  );
}

/** Parts cut so that together they take at most `width` columns (the last one kept gets the ellipsis). */
export function fitParts(parts: readonly Part[], width: number, ellipsis: string): readonly Part[] {
  const out: Part[] = [];
  let used = 0;
  for (const part of parts) {
    const clean = truncate(part.text, Number.MAX_SAFE_INTEGER);
    const w = displayWidth(clean);
    if (used + w <= width) {
      out.push({ ...part, text: clean });
      used += w;
      continue;
    }
    const room = width - used;
    if (room > 0) out.push({ ...part, text: truncate(clean, room, ellipsis) });
    break;
  }
  return out;
}

/** How many lines ProbeStatus takes for this result (so the rest of the screen can be sized). */
export function statusHeight<S>(result: ProbeResult<S>, theme: Theme, what: string, now: Date): number {
  return probeStatusLines(result, theme, what, now).length;
}

/** Seconds as an age, '' when there is none (null means "not applicable" here, e.g. no transaction). */
export function age(seconds: number | null): string {
  return seconds === null ? '' : formatDuration(seconds);
}

/** How long ago a moment was, "3d00h ago"; "never" for null. */
export function since(date: Date | null, now: Date): string {
  if (date === null) return 'never';
  return `${formatDuration(Math.max(0, Math.floor((now.getTime() - date.getTime()) / 1000)))} ago`;
}

/** Milliseconds with a precision that suits database timings: "0.42ms", "3.5ms", "250ms", "1m05s". */
export function formatMillis(ms: number | null): string {
  if (ms === null) return '-';
  if (ms === 0) return '0ms';
  if (ms < 1) return `${ms.toFixed(2)}ms`;
  if (ms < 10) return `${ms.toFixed(1)}ms`;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return formatDuration(ms / 1000);
}

/** A bar of `width` cells filled to `fraction`, drawn with the theme's sparkline levels. */
export function bar(fraction: number, width: number, theme: Theme): string {
  if (width <= 0) return '';
  const levels = theme.symbols.sparkline;
  const full = levels[levels.length - 1] ?? '#';
  const empty = levels[0] ?? '_';
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return full.repeat(filled) + empty.repeat(width - filled);
}

/** pg_stat_activity's state in the width a column can give it ("idle in transaction" is long). */
export function shortState(state: string | null): string {
  switch (state) {
    case null:
      return '';
    case 'idle in transaction':
      return 'idle in trans';
    case 'idle in transaction (aborted)':
      return 'aborted trans';
    case 'fastpath function call':
      return 'fastpath';
    default:
      return state;
  }
}

/** Lifts a column over one kind of a union of rows: other kinds show nothing and sort last. */
export function forKind<K extends string, R extends { readonly kind: string }, S extends R & { readonly kind: K }>(kind: K, column: ColumnSpec<S>): ColumnSpec<R> {
  const is = (row: R): row is S => row.kind === kind;
  const { sortValue, tone } = column;
  return {
    id: column.id,
    title: column.title,
    width: column.width,
    ...(column.minWidth !== undefined ? { minWidth: column.minWidth } : {}),
    ...(column.align !== undefined ? { align: column.align } : {}),
    text: (row) => (is(row) ? column.text(row) : ''),
    sortValue: (row) => (is(row) ? (sortValue !== undefined ? sortValue(row) : column.text(row)) : null),
    ...(tone !== undefined ? { tone: (row: R) => (is(row) ? tone(row) : undefined) } : {}),
  };
}

/** One list of a screen with several stacked lists (tables then invalid indexes; standbys then slots). */
export interface Section<R> {
  readonly title: string;
  readonly columns: readonly ColumnSpec<R>[];
  readonly rows: readonly R[];
  /** Index in the model's rows of this section's first row. */
  readonly offset: number;
  readonly emptyText: string;
}

/**
 * Heights for stacked sections sharing `height` lines: each needs a title, a table header and
 * its rows (or one empty line). The first section is the main one: the others get what they need
 * up to a third of the height each (at least their title, header and one row), the first the rest.
 */
export function sectionHeights(sections: readonly { readonly rows: number }[], height: number): readonly number[] {
  const need = sections.map((section) => 2 + Math.max(1, section.rows));
  if (need.reduce((a, b) => a + b, 0) <= height) return need;
  const cap = Math.max(3, Math.floor(height / 3));
  const heights = need.map((n, index) => (index === 0 ? 0 : Math.min(n, cap)));
  const rest = height - heights.reduce((a, b) => a + b, 0);
  heights[0] = Math.max(0, Math.min(need[0] ?? 0, rest));
  // Still too tall (a tiny terminal): the later sections give way from the last one.
  let over = heights.reduce((a, b) => a + b, 0) - height;
  for (let index = heights.length - 1; index >= 0 && over > 0; index -= 1) {
    const cut = Math.min(over, heights[index] ?? 0);
    heights[index] = (heights[index] ?? 0) - cut;
    over -= cut;
  }
  return heights;
}

/** Stacked sections, each a title line and a Table; the selection is the model's index. */
export function Sections<R>({ sections, heights, selectedIndex, width, scrollX, sort, rowKey, theme }: {
  readonly sections: readonly Section<R>[];
  readonly heights: readonly number[];
  readonly selectedIndex: number;
  readonly width: number;
  readonly scrollX: number;
  readonly sort: ListModel<R>['defaultSort'] | null;
  readonly rowKey: (row: R) => string;
  readonly theme: Theme;
}): ReactElement {
  return (
    <Box flexDirection="column" flexShrink={0}>
      {sections.map((section, index) => {
        const height = heights[index] ?? 0;
        if (height <= 0) return null;
        const local = selectedIndex - section.offset;
        return (
          <Box key={section.title} flexDirection="column" flexShrink={0}>
            <TextLine text={section.title} width={width} theme={theme} tone="accent" bold />
            {height > 1 ? (
              <Table
                columns={section.columns}
                rows={section.rows}
                rowKey={rowKey}
                selectedIndex={local >= 0 && local < section.rows.length ? local : -1}
                height={height - 1}
                width={width}
                scrollX={scrollX}
                sort={index === 0 ? sort : null}
                emptyText={section.emptyText}
                theme={theme}
              />
            ) : null}
          </Box>
        );
      })}
    </Box>
  );
}

/** What a reserved view (Alerts, Backups) says until its issue fills it in. */
export interface PlaceholderText {
  readonly heading: string;
  readonly lines: readonly string[];
}

/** A screen that shows a reserved view's text. */
export function placeholderScreen(text: PlaceholderText): (props: ScreenProps) => ReactElement {
  return function Placeholder({ width, height, theme }: ScreenProps): ReactElement {
    return (
      <ScreenFrame width={width} height={height}>
        <TextLine text={text.heading} width={width} theme={theme} tone="accent" bold />
        <TextLine text=" " width={width} theme={theme} />
        {text.lines.map((line) => (
          <TextLine key={line} text={line} width={width} theme={theme} tone="muted" />
        ))}
      </ScreenFrame>
    );
  };
}

/** A list model drawn as a Table, with the selection, scroll and sort of its view. */
export function ModelTable<R>(props: {
  readonly model: ListModel<R>;
  readonly viewState: ViewState;
  readonly height: number;
  readonly width: number;
  readonly theme: Theme;
  readonly emptyText: string;
  readonly tagged?: ReadonlySet<string>;
}): ReactElement {
  const { model, viewState } = props;
  return (
    <Table
      columns={model.columns}
      rows={model.rows}
      rowKey={model.rowKey}
      selectedIndex={selectedIndexOf(model.rows, model.rowKey, viewState)}
      height={props.height}
      width={props.width}
      scrollX={viewState.scrollX}
      sort={effectiveSort(viewState, model.defaultSort)}
      emptyText={props.emptyText}
      theme={props.theme}
      {...(props.tagged === undefined ? {} : { tagged: props.tagged })}
    />
  );
}
