import { describe, expect, it } from 'vitest';
import { render } from 'ink-testing-library';
import { layoutTable, placeColumns, Table } from '../../src/components/Table.js';
import { sortRows, visibleWindow } from '../../src/components/table-sort.js';
import type { ColumnSpec, TableProps } from '../../src/components/table-types.js';
import { makeTheme } from '../../src/components/theme.js';
import { displayWidth } from '../../src/format/text-table.js';

const theme = makeTheme({ color: false, ascii: false });
const ascii = makeTheme({ color: false, ascii: true });
// Built from the escape character: a control character in a regex literal trips no-control-regex.
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const strip = (text: string | undefined): string => (text ?? '').replace(ansi, '');

interface Session {
  readonly pid: number;
  readonly user: string;
  readonly app: string;
  readonly state: string;
  readonly waitS: number | null;
  readonly query: string;
}

const columns: readonly ColumnSpec<Session>[] = [
  { id: 'pid', title: 'pid', width: 6, align: 'right', text: (s) => String(s.pid), sortValue: (s) => s.pid },
  { id: 'user', title: 'user', width: 8, text: (s) => s.user },
  { id: 'app', title: 'application', width: 12, text: (s) => s.app },
  { id: 'state', title: 'state', width: 7, text: (s) => s.state },
  { id: 'wait', title: 'wait', width: 5, align: 'right', text: (s) => (s.waitS === null ? '-' : `${s.waitS}s`), sortValue: (s) => s.waitS, tone: (s) => (s.waitS !== null && s.waitS > 60 ? 'critical' : undefined) },
  { id: 'query', title: 'query', width: 'flex', minWidth: 10, text: (s) => s.query },
];

const sessions: readonly Session[] = [
  { pid: 4242, user: 'alice', app: 'shop', state: 'active', waitS: 75, query: 'UPDATE orders SET status = $1 WHERE id = $2' },
  { pid: 4243, user: '山田太郎', app: '在庫管理システム', state: 'idle', waitS: null, query: 'SELECT 1' },
  { pid: 17, user: 'bob', app: 'psql', state: 'idletx', waitS: 3, query: 'BEGIN; SELECT * FROM accounts FOR UPDATE' },
];

function many(count: number): Session[] {
  return Array.from({ length: count }, (_, index) => ({
    pid: 10_000 + index,
    user: `user${index % 7}`,
    app: 'batch',
    state: index % 3 === 0 ? 'active' : 'idle',
    waitS: index % 5 === 0 ? null : index % 90,
    query: `SELECT ${index} FROM t`,
  }));
}

function props(overrides: Partial<TableProps<Session>> = {}): TableProps<Session> & { theme: typeof theme } {
  return {
    columns,
    rows: sessions,
    rowKey: (s) => String(s.pid),
    selectedIndex: 0,
    height: 10,
    width: 80,
    scrollX: 0,
    sort: null,
    emptyText: 'no session matches the filter',
    theme,
    ...overrides,
  };
}

function frame(overrides: Partial<TableProps<Session>> = {}, withTheme = theme): string {
  return strip(render(<Table {...props(overrides)} theme={withTheme} />).lastFrame());
}

describe('sortRows', () => {
  const rows = [
    { id: 'a', n: 3 as number | null, s: 'beta' as string | null },
    { id: 'b', n: null, s: 'alpha' },
    { id: 'c', n: 10, s: null },
    { id: 'd', n: 3, s: 'Alpha' },
    { id: 'e', n: null, s: 'gamma' },
    { id: 'f', n: 2, s: 'beta' },
  ];
  const cols: ColumnSpec<(typeof rows)[number]>[] = [
    { id: 'id', title: 'id', width: 2, text: (r) => r.id },
    { id: 'n', title: 'n', width: 3, text: (r) => String(r.n), sortValue: (r) => r.n },
    { id: 's', title: 's', width: 5, text: (r) => r.s ?? '-', sortValue: (r) => r.s },
  ];
  const ids = (sorted: readonly { id: string }[]): string => sorted.map((r) => r.id).join('');

  it('sorts numbers numerically (10 after 3), stable on ties, nulls last ascending', () => {
    expect(ids(sortRows(rows, cols, { column: 'n', descending: false }))).toBe('fadcbe');
  });
  it('keeps nulls last when descending too, and ties in their original order', () => {
    expect(ids(sortRows(rows, cols, { column: 'n', descending: true }))).toBe('cadfbe');
  });
  it('sorts strings by locale (alpha before Alpha before beta), nulls last', () => {
    expect(ids(sortRows(rows, cols, { column: 's', descending: false }))).toBe('bdafec');
    expect(ids(sortRows(rows, cols, { column: 's', descending: true }))).toBe('eafdbc');
  });
  it('uses the text when a column has no sortValue', () => {
    expect(ids(sortRows(rows, cols, { column: 'id', descending: true }))).toBe('fedcba');
  });
  it('leaves the rows as they are without a sort or with an unknown column', () => {
    expect(ids(sortRows(rows, cols, null))).toBe('abcdef');
    expect(ids(sortRows(rows, cols, { column: 'nope', descending: false }))).toBe('abcdef');
  });
});

describe('visibleWindow (selection kept in the middle, clamped at both ends)', () => {
  it('starts at 0 while everything fits', () => {
    expect(visibleWindow(5, 4, 10)).toBe(0);
    expect(visibleWindow(10, 9, 10)).toBe(0);
  });
  it('keeps the selection in the middle of the window', () => {
    expect(visibleWindow(100, 50, 10)).toBe(46);
    expect(visibleWindow(100, 51, 10)).toBe(47);
  });
  it('does not scroll before the selection reaches the middle', () => {
    expect(visibleWindow(100, 0, 10)).toBe(0);
    expect(visibleWindow(100, 4, 10)).toBe(0);
    expect(visibleWindow(100, 5, 10)).toBe(1);
  });
  it('never runs past the last row', () => {
    expect(visibleWindow(100, 99, 10)).toBe(90);
    expect(visibleWindow(100, 97, 10)).toBe(90);
  });
  it('clamps a selection out of range (-1 for none, past the end)', () => {
    expect(visibleWindow(100, -1, 10)).toBe(0);
    expect(visibleWindow(100, 500, 10)).toBe(90);
    expect(visibleWindow(100, 3, 0)).toBe(0);
  });
  it('always contains the selection', () => {
    for (const height of [1, 2, 3, 7, 10]) {
      for (let selected = 0; selected < 40; selected += 1) {
        const first = visibleWindow(40, selected, height);
        expect(selected).toBeGreaterThanOrEqual(first);
        expect(selected).toBeLessThan(first + height);
      }
    }
  });
});

describe('Table at 80 columns', () => {
  it('renders header, rows, the selection marker and the sort indicator without colour', () => {
    expect(frame({ selectedIndex: 1, sort: { column: 'wait', descending: true } })).toBe(
      [
        '    pid user     application  state   wait▼ query',
        '   4242 alice    shop         active    75s UPDATE orders SET status = $1 WHERE…',
        '>  4243 山田太郎 在庫管理シ…  idle        - SELECT 1',
        '     17 bob      psql         idletx     3s BEGIN; SELECT * FROM accounts FOR U…',
      ].join('\n'),
    );
  });

  it('measures wide characters in columns: cut at a character boundary, columns aligned', () => {
    const lines = frame().split('\n');
    const columnOf = (line: string, word: string): number => displayWidth(line.slice(0, line.indexOf(word)));
    // gutter 1 + pid 6 + user 8 + application 12 + three gaps: the state column starts at 30.
    expect([columnOf(lines[0]!, 'state'), columnOf(lines[1]!, 'active'), columnOf(lines[2]!, 'idle'), columnOf(lines[3]!, 'idletx')]).toEqual([30, 30, 30, 30]);
    // 山田太郎 is exactly 8 columns; 在庫管理システム (16) is cut to 11 (the next character would overflow) and padded.
    expect(lines[2]).toBe('   4243 山田太郎 在庫管理シ…  idle        - SELECT 1');
  });

  it('uses the ASCII ellipsis and sort indicator of an ASCII theme', () => {
    const lines = frame({ sort: { column: 'pid', descending: false }, selectedIndex: -1 }, ascii).split('\n');
    expect(lines[0]).toBe('   pid^ user     application  state    wait query');
    expect(lines[1]).toBe('   4242 alice    shop         active    75s UPDATE orders SET status = $1 WHERE~');
  });

  it('marks tagged rows in a second gutter column, visible on the selected row too', () => {
    expect(frame({ tagged: new Set(['4242', '17']), selectedIndex: 0 })).toBe(
      [
        '     pid user     application  state    wait query',
        '>●  4242 alice    shop         active    75s UPDATE orders SET status = $1 WHER…',
        '    4243 山田太郎 在庫管理シ…  idle        - SELECT 1',
        ' ●    17 bob      psql         idletx     3s BEGIN; SELECT * FROM accounts FOR …',
      ].join('\n'),
    );
  });

  it('shows the empty text under the header when there are no rows', () => {
    expect(frame({ rows: [], selectedIndex: -1 })).toBe(['    pid user     application  state    wait query', ' no session matches the filter'].join('\n'));
  });

  it('keeps the first column frozen and scrolls the others by whole columns', () => {
    expect(frame({ scrollX: 2 })).toBe(
      [
        '    pid state    wait query',
        '>  4242 active    75s UPDATE orders SET status = $1 WHERE id = $2',
        '   4243 idle        - SELECT 1',
        '     17 idletx     3s BEGIN; SELECT * FROM accounts FOR UPDATE',
      ].join('\n'),
    );
    // Scrolling past the end keeps the last column in view.
    expect(frame({ scrollX: 99 }).split('\n')[0]).toBe('    pid query');
  });

  it('leaves out columns that do not fit instead of wrapping', () => {
    const narrow = frame({ width: 30 }).split('\n');
    expect(narrow[0]).toBe('    pid user     application');
    expect(narrow[2]).toBe('   4243 山田太郎 在庫管理シ…');
    for (const line of narrow) expect(displayWidth(line)).toBeLessThanOrEqual(30);
  });
});

describe('Table at 200 columns', () => {
  it('gives the flex column the remaining width', () => {
    const long = { ...sessions[0]!, query: `SELECT ${'x, '.repeat(80)}y FROM t` };
    const lines = frame({ width: 200, rows: [long], selectedIndex: -1 }).split('\n');
    expect(lines[0]).toBe('    pid user     application  state    wait query');
    // 1 gutter + 6 + 8 + 12 + 7 + 5 + five gaps = 44 columns before the query: 156 are left for it.
    expect(lines[1]).toBe(`   4242 alice    shop         active    75s ${`SELECT ${'x, '.repeat(80)}y FROM t`.slice(0, 155)}…`);
    expect(displayWidth(lines[1]!)).toBe(200);
  });
});

describe('Table windowing', () => {
  it('renders exactly height lines for 5,000 rows, like for 50, and reads only the visible rows', () => {
    let reads = 0;
    const counted: ColumnSpec<Session>[] = columns.map((column) => ({ ...column, text: (row: Session) => ((reads += 1), column.text(row)) }));
    const big = render(<Table {...props({ columns: counted, rows: many(5000), selectedIndex: 2500, height: 24 })} />);
    const bigLines = strip(big.lastFrame()).split('\n');
    expect(bigLines).toHaveLength(24);
    // 23 rows × 6 columns (the header reads titles, not rows).
    expect(reads).toBe(23 * 6);
    const small = strip(render(<Table {...props({ rows: many(50), selectedIndex: 25, height: 24 })} />).lastFrame()).split('\n');
    expect(small).toHaveLength(24);
    expect(bigLines[12]).toMatch(/^> 12500 /);
    expect(small[12]).toMatch(/^> 10025 /);
  });

  it('keeps the selection in view at the end of the rows', () => {
    const lines = frame({ rows: many(5000), selectedIndex: 4999, height: 5 }).split('\n');
    expect(lines.map((line) => line.slice(0, 7))).toEqual(['    pid', '  14996', '  14997', '  14998', '> 14999']);
  });

  it('lays out every line at exactly the width', () => {
    for (const width of [80, 200, 37]) {
      const layout = layoutTable(props({ width, rows: [...sessions, ...many(30)], tagged: new Set(['17']) }));
      expect(displayWidth(layout.header)).toBe(width);
      for (const row of layout.rows) expect(displayWidth(row.gutter + row.segments.map((segment) => segment.text).join(''))).toBe(width);
    }
  });

  it('places the frozen column alone, cut to the width, when nothing else fits', () => {
    expect(placeColumns(columns, 4, 0).map((placed) => [placed.column.id, placed.width])).toEqual([['pid', 4]]);
  });

  it('renders a 5,000-row table as one window of 23 lines wherever the selection is', () => {
    const rows = many(5000);
    const instance = render(<Table {...props({ rows, selectedIndex: 0, height: 23 })} />);
    for (let index = 1; index <= 20; index += 1) {
      instance.rerender(<Table {...props({ rows, selectedIndex: index * 200, height: 23 })} />);
      const lines = strip(instance.lastFrame()).split('\n');
      expect(lines).toHaveLength(23);
      expect(lines.filter((line) => line.startsWith('>'))).toHaveLength(1);
    }
  });
});
