import { describe, expect, it } from 'vitest';
import { render } from 'ink-testing-library';
import { viewAliases } from '../../src/app/state.js';
import { Footer, fitHints, footerHints, keyLabel } from '../../src/components/Footer.js';
import { Header, refreshStatus, Tabs } from '../../src/components/Header.js';
import { filterError, FilterPrompt, matchNames, PalettePrompt, promptLine } from '../../src/components/Prompts.js';
import { makeTheme } from '../../src/components/theme.js';
import { Toasts } from '../../src/components/Toasts.js';
import { commands, effectiveCommands, scopesFor } from '../../src/keymap.js';
import { displayWidth } from '../../src/format/text-table.js';

const theme = makeTheme({ color: false, ascii: false });
const ascii = makeTheme({ color: false, ascii: true });
// Built from the escape character: a control character in a regex literal trips no-control-regex.
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const strip = (text: string | undefined): string => (text ?? '').replace(ansi, '');
const frame = (element: React.ReactElement): string => strip(render(element).lastFrame());

const now = new Date(2024, 0, 1, 12, 0, 5);
const target = 'prod / db1 (postgres@db1.example.com:5432/postgres)';

describe('Header', () => {
  const header = (width: number, overrides: Partial<Parameters<typeof Header>[0]> = {}): string =>
    frame(<Header target={target} role="primary" paused={false} lastRefresh={new Date(2024, 0, 1, 12, 0, 2)} now={now} width={width} theme={theme} viewTitle="Activity" {...overrides} />);

  it('fits product, view, target, role, refresh status and clock in 80 columns, cutting the target', () => {
    expect(header(80)).toBe('pgwarden │ Activity │ prod / db1 (postgre… │ primary  refreshed 3s ago  12:00:05');
  });

  it('shows the whole target at 200 columns, the clock at the right edge', () => {
    const line = header(200);
    const left = `pgwarden │ Activity │ ${target} │ primary`;
    const right = 'refreshed 3s ago  12:00:05';
    expect(line).toBe(left + ' '.repeat(200 - displayWidth(left) - displayWidth(right)) + right);
    expect(displayWidth(line)).toBe(200);
  });

  it('says paused, stale and waiting', () => {
    expect(header(80, { paused: true, role: null, viewTitle: 'Locks' })).toBe('pgwarden │ Locks │ prod / db1 (postgres@db1.example.com:5432/…  paused  12:00:05');
    expect(header(80, { target: 'demo', role: 'standby', viewTitle: 'Locks', lastRefresh: new Date(2024, 0, 1, 11, 58, 0) })).toBe(
      'pgwarden │ Locks │ demo │ standby           stale: refreshed 2m05s ago  12:00:05',
    );
    expect(header(80, { target: 'demo', role: null, viewTitle: 'Overview', lastRefresh: null })).toBe(
      'pgwarden │ Overview │ demo                            waiting for data  12:00:05',
    );
  });

  it('keeps the identity when too narrow for everything', () => {
    expect(header(40)).toBe('pgwarden │ prod / db1 (postgres@db1.exa…');
  });

  it('uses the ASCII separator', () => {
    expect(frame(<Header target="demo" role={null} paused={true} lastRefresh={null} now={now} width={40} theme={ascii} viewTitle="Pool" />)).toBe(
      'pgwarden | Pool | demo  paused  12:00:05',
    );
  });

  it('turns stale after the threshold', () => {
    const refreshed = new Date(now.getTime() - 15_000);
    expect(refreshStatus(false, refreshed, now)).toEqual({ text: 'refreshed 15s ago', tone: 'muted' });
    expect(refreshStatus(false, new Date(now.getTime() - 15_001), now).tone).toBe('stale');
    expect(refreshStatus(false, refreshed, now, 5_000)).toEqual({ text: 'stale: refreshed 15s ago', tone: 'stale' });
  });
});

describe('Tabs', () => {
  const views = ['Overview', 'Activity', 'Pool', 'Locks', 'Tables', 'Replication', 'Queries', 'Alerts', 'Backups'].map((title, index) => ({ id: title.toLowerCase(), title, key: String(index + 1) }));
  const tabs = (width: number, current = 'replication'): string => frame(<Tabs views={views} current={current} width={width} theme={theme} />);

  it('shows every title at 200 columns, the current one in brackets', () => {
    expect(tabs(200)).toBe('1 Overview 2 Activity 3 Pool 4 Locks 5 Tables [6 Replication] 7 Queries 8 Alerts 9 Backups');
  });

  it('shortens the other titles at 80 columns, never the current one', () => {
    expect(tabs(80)).toBe('1 Over… 2 Acti… 3 Pool 4 Locks 5 Tabl… [6 Replication] 7 Quer… 8 Aler… 9 Back…');
    expect(tabs(80, 'overview')).toBe('[1 Overview] 2 Acti… 3 Pool 4 Locks 5 Tabl… 6 Repl… 7 Quer… 8 Aler… 9 Back…');
  });

  it('falls back to keys, then cuts the line', () => {
    expect(tabs(60)).toBe('1 2 3 4 5 [6 Replication] 7 8 9');
    expect(tabs(30)).toBe('1 2 3 4 5 [6 Replication] 7 8…');
  });
});

describe('Footer', () => {
  const footer = (view: string, width: number, options: { dialog?: boolean; readOnly?: boolean; message?: string } = {}): string =>
    frame(
      <Footer
        commands={options.readOnly === true ? effectiveCommands({ readOnly: true }) : commands}
        scopes={scopesFor(view, options.dialog ?? false)}
        width={width}
        theme={theme}
        {...(options.message === undefined ? {} : { message: options.message })}
      />,
    );

  it('lists the hints of the keymap, most specific scope first (200 columns)', () => {
    expect(footer('activity', 200)).toBe('space tag  x cancel  K terminate  / filter  s sort  enter detail  q quit  ? help  p pause  : go to');
    expect(footer('tables', 200)).toBe('v vacuum  a analyze  / filter  s sort  enter detail  q quit  ? help  p pause  : go to');
    expect(footer('queries', 200)).toBe('/ filter  s sort  enter detail  q quit  ? help  p pause  : go to');
    expect(footer('overview', 200)).toBe('q quit  ? help  p pause  : go to');
  });

  it('applies the session commands on Locks too', () => {
    expect(footer('locks', 200)).toBe('space tag  x cancel  K terminate  / filter  s sort  enter detail  q quit  ? help  p pause  : go to');
  });

  it('keeps whole pairs at 80 columns, marks the cut, and always keeps help', () => {
    expect(footer('activity', 80)).toBe('space tag  x cancel  K terminate  / filter  s sort  enter detail  …  ? help');
    expect(footer('tables', 80)).toBe('v vacuum  a analyze  / filter  s sort  enter detail  q quit  p pause  …  ? help');
    expect(footer('overview', 80)).toBe('q quit  ? help  p pause  : go to');
  });

  it('drops dangerous commands in read-only mode', () => {
    expect(footer('activity', 80, { readOnly: true })).toBe('space tag  / filter  s sort  enter detail  q quit  ? help  p pause  : go to');
  });

  it('shows a message first', () => {
    expect(footer('overview', 80, { message: 'needs more than one node in the config' })).toBe('needs more than one node in the config  q quit  ? help  p pause  : go to');
  });

  it('generates the pairs from the keymap, skipping keys a more specific scope shadows', () => {
    const hints = footerHints(commands, scopesFor('activity', false));
    for (const hint of hints) {
      const command = commands.find((candidate) => candidate.id === hint.id);
      expect(command?.hint).toBe(hint.hint);
    }
    expect(hints.map((hint) => hint.id)).toEqual(commands.filter((command) => command.hint !== undefined && ['activity', 'list', 'global'].includes(command.scope)).map((command) => command.id).sort((a, b) => order(a) - order(b)));
    const shadowing = [{ id: 'quit' as const, keys: ['q'], description: 'quit', scope: 'activity' as const, dangerous: false, hint: 'leave' }, ...commands];
    expect(footerHints(shadowing, ['activity', 'global']).filter((hint) => hint.key === 'q').map((hint) => hint.hint)).toEqual(['leave']);
  });

  it('names keys readably', () => {
    expect(['enter', 'space', 'escape', 'ctrl+l', 'shift+tab', 'pagedown', 'x', 'K'].map(keyLabel)).toEqual(['enter', 'space', 'esc', '^L', 'shift-tab', 'PgDn', 'x', 'K']);
  });

  it('fits nothing but the ellipsis into a tiny room', () => {
    expect(fitHints([{ id: 'a', key: 'a', hint: 'alpha' }, { id: 'b', key: 'b', hint: 'beta' }], 3, '…')).toEqual({ shown: [], cut: true, pinned: null });
  });
});

// Scope order of activity: activity, list, global; keymap order inside a scope.
function order(id: string): number {
  const rank = { activity: 0, locks: 0, tables: 0, alerts: 0, backups: 0, replication: 0, list: 1, global: 2, dialog: 3 } as const;
  const index = commands.findIndex((command) => command.id === id);
  const command = commands[index]!;
  return rank[command.scope] * 1000 + index;
}

describe('Toasts', () => {
  const toasts = [
    { id: 1, level: 'info' as const, text: 'expired', until: 10 },
    { id: 2, level: 'success' as const, text: 'cancelled the query of pid 4242', until: 100 },
    { id: 3, level: 'warning' as const, text: 'pid 4242 had already finished', until: 100 },
    { id: 4, level: 'error' as const, text: 'permission denied to terminate pid 17: must be a superuser or have the pg_signal_backend privilege', until: 100 },
  ];

  it('shows the newest three still due, newest last, a level word for NO_COLOR, one line each (80 columns)', () => {
    expect(frame(<Toasts toasts={toasts} width={80} theme={theme} now={50} />)).toBe(
      [
        'done: cancelled the query of pid 4242',
        'warning: pid 4242 had already finished',
        'error: permission denied to terminate pid 17: must be a superuser or have the p…',
      ].join('\n'),
    );
  });

  it('keeps only the three newest whatever the time, whole at 200 columns', () => {
    expect(frame(<Toasts toasts={toasts} width={200} theme={theme} />)).toBe(
      ['done: cancelled the query of pid 4242', 'warning: pid 4242 had already finished', `error: ${toasts[3]!.text}`].join('\n'),
    );
    expect(frame(<Toasts toasts={[{ id: 1, level: 'info', text: 'refreshing', until: 1 }]} width={80} theme={theme} />)).toBe('refreshing');
  });

  it('renders nothing without toasts', () => {
    expect(frame(<Toasts toasts={[]} width={80} theme={theme} />)).toBe('');
  });
});

describe('PalettePrompt and FilterPrompt', () => {
  const names = Object.keys(viewAliases);

  it('shows the input, the cursor and every name when empty', () => {
    expect(frame(<PalettePrompt input="" error={null} suggestions={names} width={80} theme={theme} />)).toBe(
      [':_', 'overview  home  activity  sessions  act  pool  pools  pgbouncer  connections  …'].join('\n'),
    );
  });

  it('suggests prefix matches first, then substrings', () => {
    expect(frame(<PalettePrompt input="re" error={null} suggestions={names} width={80} theme={theme} />)).toBe([':re_', 'replication  repl'].join('\n'));
    expect(matchNames('lo', names)).toEqual(['locks', 'lock', 'blocking', 'bloat', 'slots', 'slow']);
    expect(matchNames(':LOCK', names)).toEqual(['locks', 'lock', 'blocking']);
  });

  it('shows the error and what was probably meant', () => {
    expect(frame(<PalettePrompt input="lcks" error={'no view named "lcks"'} suggestions={names} width={200} theme={theme} />)).toBe(
      [':lcks_', 'no view named "lcks"', 'locks'].join('\n'),
    );
  });

  it('keeps the end of a long input in view', () => {
    expect(promptLine(':', 'x'.repeat(100), 20, '…')).toBe(`:…${'x'.repeat(17)}_`);
    expect(displayWidth(promptLine('/', '日本語'.repeat(20), 21, '…'))).toBeLessThanOrEqual(21);
  });

  it('shows a filter and why its regular expression is invalid', () => {
    expect(frame(<FilterPrompt input="!idle|(" width={80} theme={theme} />)).toBe(['/!idle|(_', 'invalid regular expression: Unterminated group'].join('\n'));
    expect(frame(<FilterPrompt input="^idle in" width={80} theme={theme} />)).toBe('/^idle in_');
    expect(filterError('!')).toBeNull();
  });
});
