import { describe, expect, it } from 'vitest';
import { views, type ViewState } from '../../src/app/state.js';
import { makeTheme } from '../../src/components/theme.js';
import { displayWidth } from '../../src/format/text-table.js';
import { unconfiguredLines } from '../../src/screens/Backups.js';
import { fitParts, formatMillis, sectionHeights, selectedIndexOf, shortState } from '../../src/screens/common.js';
import { screens } from '../../src/screens/index.js';
import {
  largeActivity, okResult, renderScreen, resetStatementsSnapshot, resultsIn, screenProps, standbyReplication, standbyServerSnapshot,
  type PropsOptions, type ResultState,
} from '../fixtures/snapshots.js';

const states: readonly ResultState[] = ['pending', 'ok', 'unsupported', 'error'];
const sizes: readonly (readonly [number, number])[] = [[80, 24], [200, 50], [40, 10]];

describe('the screens table', () => {
  it('has one screen per view, under its own id', () => {
    expect(Object.keys(screens).sort()).toEqual([...views].sort());
    for (const view of views) expect(screens[view].id).toBe(view);
  });

  it('gives every list view but the reserved ones a model', () => {
    const lists = views.filter((view) => screens[view].model !== undefined);
    expect(lists).toEqual(['activity', 'pool', 'locks', 'tables', 'replication', 'queries', 'alerts', 'backups']);
    for (const view of lists) {
      const model = screens[view].model!(screenProps(view));
      expect(model.columns.map((column) => column.id)).toContain(model.defaultSort.column);
      // Keys are unique: the cursor and React rely on them.
      const keys = model.rows.map(model.rowKey);
      expect(new Set(keys).size).toBe(keys.length);
    }
  });
});

describe('every screen stays inside its frame', () => {
  const variants: readonly (readonly [string, PropsOptions])[] = [
    ['ascii theme', { theme: makeTheme({ color: false, ascii: true }) }],
    ['colour theme', { theme: makeTheme({ color: true, ascii: false }) }],
    ['a standby with reset statements', {
      results: resultsIn('ok', { server: okResult(standbyServerSnapshot), replication: okResult(standbyReplication), statements: okResult(resetStatementsSnapshot) }),
    }],
    ['5,000 sessions', { results: resultsIn('ok', { activity: okResult(largeActivity(5000)) }), viewState: { selectedIndex: 4999 } }],
    ['scrolled right', { viewState: { scrollX: 3 } }],
  ];

  for (const view of views) {
    it(`${view}: every state and size, no line wider than the width, no more lines than the height`, () => {
      const cases: PropsOptions[] = [];
      for (const state of states) for (const [width, height] of sizes) cases.push({ results: resultsIn(state), width, height });
      for (const [, options] of variants) for (const [width, height] of sizes) cases.push({ ...options, width, height });
      for (const options of cases) {
        const { lines } = renderScreen(screens[view], screenProps(view, options));
        const label = `${view} ${options.width}×${options.height}`;
        expect(lines.length, label).toBeLessThanOrEqual(options.height!);
        for (const line of lines) expect(displayWidth(line), `${label}: ${line}`).toBeLessThanOrEqual(options.width!);
      }
    });
  }
});

describe('reserved and help views', () => {
  it('Alerts says when the console runs no alert engine, whatever the probes say (test/unit/screens-alerts.test.tsx has the rest)', () => {
    for (const state of states) {
      const { text } = renderScreen(screens.alerts, screenProps('alerts', { results: resultsIn(state), width: 200, height: 50 }));
      expect(text.filter((line) => line !== '')).toEqual(['the alert engine is not running in this console']);
    }
  });

  it('Backups without a backup monitor says how to configure a backup plan (test/unit/screens-backups.test.tsx has the rest)', () => {
    const { text } = renderScreen(screens.backups, screenProps('backups'));
    expect(text[0]).toBe('No backup plan: the config has no backups section covering it.');
    expect(text[2]).toContain('docs/configuration.md#backups');
    expect(unconfiguredLines('main')[0]).toBe('No backup plan for cluster main: the config has no backups section covering it.');
  });

  it('Help lists the keymap', () => {
    const { text } = renderScreen(screens.help, screenProps('help'));
    expect(text[0]).toMatch(/^Key bindings/);
    expect(text.slice(1, 4)).toEqual(['Everywhere', 'q, ^C      Quit and restore the terminal', '?          Show every key binding']);
    expect(text).toHaveLength(24);
    // The view's selected index scrolls it.
    expect(renderScreen(screens.help, screenProps('help', { viewState: { selectedIndex: 1 } })).text[1]).toBe('q, ^C      Quit and restore the terminal');
  });
});

describe('screen helpers', () => {
  const view = (fields: Partial<ViewState>): ViewState => ({ selectedKey: null, selectedIndex: 0, sort: null, filter: null, scrollX: 0, ...fields });
  const rows = ['a', 'b', 'c'];

  it('finds the selected row by key, else by index clamped to the rows', () => {
    expect(selectedIndexOf(rows, (row) => row, view({ selectedKey: 'b' }))).toBe(1);
    expect(selectedIndexOf(rows, (row) => row, view({ selectedKey: 'gone', selectedIndex: 2 }))).toBe(2);
    expect(selectedIndexOf(rows, (row) => row, view({ selectedKey: 'gone', selectedIndex: 7 }))).toBe(2);
    expect(selectedIndexOf([], (row: string) => row, view({ selectedKey: 'b' }))).toBe(-1);
  });

  it('shares the height between stacked sections, the first getting the rest', () => {
    expect(sectionHeights([{ rows: 5 }, { rows: 2 }], 20)).toEqual([7, 4]);
    expect(sectionHeights([{ rows: 50 }, { rows: 2 }, { rows: 0 }], 20)).toEqual([13, 4, 3]);
    expect(sectionHeights([{ rows: 50 }, { rows: 40 }], 12)).toEqual([8, 4]);
    expect(sectionHeights([{ rows: 50 }, { rows: 40 }, { rows: 40 }], 5)).toEqual([0, 3, 2]);
  });

  it('cuts toned parts to a width as one line', () => {
    expect(fitParts([{ text: 'abc' }, { text: 'def', tone: 'warning' }, { text: 'ghi' }], 5, '…')).toEqual([{ text: 'abc' }, { text: 'd…', tone: 'warning' }]);
    expect(fitParts([{ text: '日本' }, { text: 'x' }], 4, '…')).toEqual([{ text: '日本' }]);
  });

  it('formats milliseconds for database timings', () => {
    expect([0, 0.42, 3.5, 250, 65_000, null].map(formatMillis)).toEqual(['0ms', '0.42ms', '3.5ms', '250ms', '1m05s', '-']);
  });

  it('shortens the long session states', () => {
    expect(['idle in transaction', 'idle in transaction (aborted)', 'fastpath function call', 'active', null].map(shortState)).toEqual([
      'idle in trans', 'aborted trans', 'fastpath', 'active', '',
    ]);
  });
});
