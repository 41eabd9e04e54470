import { describe, expect, it } from 'vitest';
import { renderToString } from 'ink';
import { render } from 'ink-testing-library';
import { ConfirmDialog, confirmPrompt, progressBar, ProgressDialog, type PlanView, type ProgressView } from '../../src/components/ConfirmDialog.js';
import { clampScroll, DetailPane, keyValueLines, wrapText } from '../../src/components/DetailPane.js';
import { keyLabel } from '../../src/components/Footer.js';
import { HelpOverlay, helpLines } from '../../src/components/HelpOverlay.js';
import { makeTheme } from '../../src/components/theme.js';
import { displayWidth, fit } from '../../src/format/text-table.js';
import { commands, effectiveCommands } from '../../src/keymap.js';

const theme = makeTheme({ color: false, ascii: false });
const ascii = makeTheme({ color: false, ascii: true });
// Built from the escape character: a control character in a regex literal trips no-control-regex.
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const strip = (text: string | undefined): string => (text ?? '').replace(ansi, '');
const frame = (element: React.ReactElement): string => strip(render(element).lastFrame());
// ink-testing-library's stdout is 100 columns wide, which cuts a bordered box's right edge at
// 200 columns; renderToString draws on a terminal of the width asked.
const frame200 = (element: React.ReactElement): string => strip(renderToString(element, { columns: 200 }));

/** A rounded box of `width` columns around these lines, as Ink draws it with paddingX 1. */
function box(lines: readonly string[], width: number): string {
  return [`╭${'─'.repeat(width - 2)}╮`, ...lines.map((line) => `│ ${fit(line, width - 4)} │`), `╰${'─'.repeat(width - 2)}╯`].join('\n');
}

describe('wrapText', () => {
  it('breaks at spaces, dropping the space at each break', () => {
    expect(wrapText('the quick brown fox jumps', 10)).toEqual(['the quick', 'brown fox', 'jumps']);
    expect(wrapText('aaa bbb', 3)).toEqual(['aaa', 'bbb']);
  });

  it('breaks a word longer than the line inside the word', () => {
    expect(wrapText('abcdefghij', 4)).toEqual(['abcd', 'efgh', 'ij']);
    expect(wrapText('to pg_terminate_backend', 8)).toEqual(['to', 'pg_termi', 'nate_bac', 'kend']);
  });

  it('counts wide characters as two columns and never splits one', () => {
    expect(wrapText('日本語のテキスト', 5)).toEqual(['日本', '語の', 'テキ', 'スト']);
    expect(wrapText('ab 日本語', 5)).toEqual(['ab', '日本', '語']);
    expect(wrapText("name = '山田太郎'", 12)).toEqual(['name =', "'山田太郎'"]);
  });

  it('keeps newlines, empty lines and the indentation of each line', () => {
    expect(wrapText('a\n\nb', 10)).toEqual(['a', '', 'b']);
    expect(wrapText('SELECT 1\r\n  FROM t\n', 20)).toEqual(['SELECT 1', '  FROM t', '']);
    expect(wrapText('\tx', 20)).toEqual(['    x']);
  });

  it('keeps every line within the width', () => {
    const text = "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.name = '山田太郎' AND o.note = 'ｆｕｌｌ　ｗｉｄｔｈ'\n\tORDER BY 1";
    for (const width of [2, 3, 7, 10, 33, 80]) {
      const lines = wrapText(text, width);
      for (const line of lines) expect(displayWidth(line)).toBeLessThanOrEqual(width);
      // Nothing is lost but the spaces at the breaks.
      expect(lines.join('').replace(/\s/g, '')).toBe(text.replace(/\s/g, ''));
    }
  });

  it('returns nothing for no room', () => {
    expect(wrapText('abc', 0)).toEqual([]);
  });
});

const sections = [
  { heading: 'Query', lines: ["SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.name = '山田太郎' AND o.status = 'pending'\nORDER BY o.created_at DESC\nLIMIT 50"] },
  { heading: 'Session', lines: keyValueLines([['pid', '4242'], ['user', 'alice'], ['application', 'shop'], ['state', 'active for 5m02s']]) },
  { heading: 'Waiting for', lines: ['pid 17 (bob@psql): RowExclusiveLock on public.orders'] },
];

describe('DetailPane', () => {
  it('wraps the query at the pane width (80 columns) and shows where the view is', () => {
    expect(frame(<DetailPane title="Session 4242" sections={sections} width={80} height={12} scroll={0} theme={theme} />)).toBe(
      [
        '╭──────────────────────────────────────────────────────────────────────────────╮',
        '│ Session 4242                                                          1-9/14 │',
        '│ Query                                                                        │',
        '│ SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id   │',
        "│ WHERE c.name = '山田太郎' AND o.status = 'pending'                           │",
        '│ ORDER BY o.created_at DESC                                                   │',
        '│ LIMIT 50                                                                     │',
        '│                                                                              │',
        '│ Session                                                                      │',
        '│ pid          4242                                                            │',
        '│ user         alice                                                           │',
        '╰──────────────────────────────────────────────────────────────────────────────╯',
      ].join('\n'),
    );
  });

  it('scrolls, stopping at the last page, with ASCII borders', () => {
    expect(frame(<DetailPane title="Session 4242" sections={sections} width={80} height={12} scroll={100} theme={ascii} />)).toBe(
      [
        '+------------------------------------------------------------------------------+',
        '| Session 4242                                                         6-14/14 |',
        '|                                                                              |',
        '| Session                                                                      |',
        '| pid          4242                                                            |',
        '| user         alice                                                           |',
        '| application  shop                                                            |',
        '| state        active for 5m02s                                                |',
        '|                                                                              |',
        '| Waiting for                                                                  |',
        '| pid 17 (bob@psql): RowExclusiveLock on public.orders                         |',
        '+------------------------------------------------------------------------------+',
      ].join('\n'),
    );
  });

  it('shows everything at 200 columns without a position', () => {
    expect(frame200(<DetailPane title="Session 4242" sections={sections} width={200} height={18} scroll={3} theme={theme} />)).toBe(
      box(
        [
          'Session 4242',
          'Query',
          "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.name = '山田太郎' AND o.status = 'pending'",
          'ORDER BY o.created_at DESC',
          'LIMIT 50',
          '',
          'Session',
          'pid          4242',
          'user         alice',
          'application  shop',
          'state        active for 5m02s',
          '',
          'Waiting for',
          'pid 17 (bob@psql): RowExclusiveLock on public.orders',
          '',
          '',
        ],
        200,
      ),
    );
  });

  it('aligns key/value rows and clamps the scroll', () => {
    expect(keyValueLines([['pid', '1'], ['名前', 'x']])).toEqual(['pid   1', '名前  x']);
    expect([clampScroll(-3, 10, 4), clampScroll(3, 10, 4), clampScroll(9, 10, 4), clampScroll(2, 3, 4)]).toEqual([0, 3, 6, 0]);
  });
});

const low: PlanView = {
  title: 'Cancel the query of pid 4242',
  target: 'pid 4242 (alice@shop, psql)',
  danger: 'low',
  steps: [{ description: 'cancel the running query; the session stays connected', sql: 'SELECT pg_cancel_backend(4242)' }],
  confirmToken: null,
  refused: null,
};
const high: PlanView = {
  title: 'Terminate 3 tagged sessions',
  target: 'pids 17, 4242, 4243 on prod / db1',
  danger: 'high',
  steps: [17, 4242, 4243].map((pid) => ({ description: `terminate pid ${pid}`, sql: `SELECT pg_terminate_backend(${pid})` })),
  confirmToken: '3',
  refused: null,
};

describe('ConfirmDialog', () => {
  it('shows the plan and a y/n prompt for low danger (80 columns)', () => {
    expect(frame(<ConfirmDialog plan={low} typed="" width={80} theme={theme} />)).toBe(
      [
        '╭──────────────────────────────────────────────────────────────────────────────╮',
        '│ Cancel the query of pid 4242                                                 │',
        '│ target: pid 4242 (alice@shop, psql)                                          │',
        '│ danger: low                                                                  │',
        '│                                                                              │',
        '│ 1. SELECT pg_cancel_backend(4242)                                            │',
        '│    cancel the running query; the session stays connected                     │',
        '│                                                                              │',
        '│ press y to run, n or esc to cancel                                           │',
        '╰──────────────────────────────────────────────────────────────────────────────╯',
      ].join('\n'),
    );
  });

  it('asks to type the token for high danger, echoing what was typed (80 columns)', () => {
    expect(frame(<ConfirmDialog plan={high} typed="" width={80} theme={theme} />)).toBe(
      [
        '╭──────────────────────────────────────────────────────────────────────────────╮',
        '│ Terminate 3 tagged sessions                                                  │',
        '│ target: pids 17, 4242, 4243 on prod / db1                                    │',
        '│ danger: high                                                                 │',
        '│                                                                              │',
        '│ 1. SELECT pg_terminate_backend(17)                                           │',
        '│    terminate pid 17                                                          │',
        '│ 2. SELECT pg_terminate_backend(4242)                                         │',
        '│    terminate pid 4242                                                        │',
        '│ 3. SELECT pg_terminate_backend(4243)                                         │',
        '│    terminate pid 4243                                                        │',
        '│                                                                              │',
        '│ type 3 to confirm: _                                                         │',
        '│ esc to cancel                                                                │',
        '╰──────────────────────────────────────────────────────────────────────────────╯',
      ].join('\n'),
    );
  });

  it('offers enter once the token is typed (200 columns)', () => {
    expect(frame200(<ConfirmDialog plan={high} typed="3" width={200} theme={theme} />)).toBe(
      box(
        [
          'Terminate 3 tagged sessions',
          'target: pids 17, 4242, 4243 on prod / db1',
          'danger: high',
          '',
          '1. SELECT pg_terminate_backend(17)',
          '   terminate pid 17',
          '2. SELECT pg_terminate_backend(4242)',
          '   terminate pid 4242',
          '3. SELECT pg_terminate_backend(4243)',
          '   terminate pid 4243',
          '',
          'type 3 to confirm: 3_',
          'enter to run, esc to cancel',
        ],
        200,
      ),
    );
  });

  it('shows a refused plan with its reason and only a way out', () => {
    expect(frame(<ConfirmDialog plan={{ ...low, refused: 'pid 4242 is one of pgwarden’s own sessions' }} typed="" width={80} theme={theme} />)).toBe(
      [
        '╭──────────────────────────────────────────────────────────────────────────────╮',
        '│ Cancel the query of pid 4242                                                 │',
        '│ target: pid 4242 (alice@shop, psql)                                          │',
        '│ danger: low                                                                  │',
        '│                                                                              │',
        '│ 1. SELECT pg_cancel_backend(4242)                                            │',
        '│    cancel the running query; the session stays connected                     │',
        '│                                                                              │',
        '│ refused: pid 4242 is one of pgwarden’s own sessions                          │',
        '│ esc to close                                                                 │',
        '╰──────────────────────────────────────────────────────────────────────────────╯',
      ].join('\n'),
    );
    // Even a plan that asks for a token: a refusal wins.
    expect(confirmPrompt({ ...high, refused: 'read-only mode' }, '3').map((line) => line.text)).toEqual(['refused: read-only mode', 'esc to close']);
  });

  it('wraps a long command under its number (ASCII, 60 columns)', () => {
    const plan: PlanView = {
      ...low,
      danger: 'medium',
      steps: [{ description: 'rebuild the table online', command: 'pg_repack --table public.orders --jobs 2 --no-superuser-check --wait-timeout 60 --dbname shop' }],
    };
    expect(frame(<ConfirmDialog plan={plan} typed="" width={60} theme={ascii} />)).toBe(
      [
        '+----------------------------------------------------------+',
        '| Cancel the query of pid 4242                             |',
        '| target: pid 4242 (alice@shop, psql)                      |',
        '| danger: medium                                           |',
        '|                                                          |',
        '| 1. pg_repack --table public.orders --jobs 2              |',
        '|    --no-superuser-check --wait-timeout 60 --dbname shop  |',
        '|    rebuild the table online                              |',
        '|                                                          |',
        '| press y to run, n or esc to cancel                       |',
        '+----------------------------------------------------------+',
      ].join('\n'),
    );
  });

  it('marks a typed text that stops matching the token', () => {
    expect(confirmPrompt(high, '4')[0]).toMatchObject({ text: 'type 3 to confirm: 4_', tone: 'critical' });
    expect(confirmPrompt(high, '')[0]).toMatchObject({ tone: 'warning' });
    expect(confirmPrompt(high, '4')[1]?.text).toBe('esc to cancel');
  });
});

describe('ProgressDialog', () => {
  const plan = { title: 'VACUUM (ANALYZE) public.orders', steps: [{ description: 'vacuum and analyze public.orders', sql: 'VACUUM (ANALYZE) public.orders' }] };
  const running: ProgressView = {
    steps: [{ description: 'vacuum and analyze public.orders', status: 'running', message: 'scanning heap' }],
    fraction: 0.375,
    message: 'scanning heap: 3,000 of 8,000 blocks',
    finished: false,
    ok: null,
  };

  it('lists the steps pending before the first event', () => {
    expect(frame(<ProgressDialog plan={plan} progress={null} width={80} theme={theme} />)).toBe(
      box(['VACUUM (ANALYZE) public.orders', '', 'pending 1. vacuum and analyze public.orders', '', 'starting'], 80),
    );
  });

  it('shows the running step, the progress bar and the latest message (80 columns)', () => {
    expect(frame(<ProgressDialog plan={plan} progress={running} width={80} theme={theme} />)).toBe(
      [
        '╭──────────────────────────────────────────────────────────────────────────────╮',
        '│ VACUUM (ANALYZE) public.orders                                               │',
        '│                                                                              │',
        '│ running 1. vacuum and analyze public.orders                                  │',
        '│            scanning heap                                                     │',
        '│                                                                              │',
        '│ ███████████████████████████▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁  37% │',
        '│                                                                              │',
        '│ scanning heap: 3,000 of 8,000 blocks                                         │',
        '│                                                                              │',
        '│ running; esc closes once finished                                            │',
        '╰──────────────────────────────────────────────────────────────────────────────╯',
      ].join('\n'),
    );
  });

  it('says when the fraction is unknown', () => {
    expect(frame(<ProgressDialog plan={plan} progress={{ ...running, fraction: null, message: null }} width={80} theme={ascii} />).split('\n')[6]).toBe(`| ${fit('in progress (no estimate)', 76)} |`);
  });

  it('offers esc once finished, with the earlier messages (200 columns)', () => {
    const done: ProgressView = { steps: [{ description: 'vacuum and analyze public.orders', status: 'done', message: null }], fraction: 1, message: 'removed 120,000 dead tuples', finished: true, ok: true };
    expect(frame200(<ProgressDialog plan={plan} progress={done} messages={['scanning heap', 'vacuuming indexes']} width={200} theme={theme} />)).toBe(
      box(['VACUUM (ANALYZE) public.orders', '', 'done    1. vacuum and analyze public.orders', '', 'scanning heap', 'vacuuming indexes', 'removed 120,000 dead tuples', '', 'finished; esc to close'], 200),
    );
  });

  it('says failed when a step failed', () => {
    const failed: ProgressView = { steps: [{ description: 'vacuum and analyze public.orders', status: 'failed', message: 'canceling statement due to lock timeout' }], fraction: null, message: null, finished: true, ok: false };
    expect(frame(<ProgressDialog plan={plan} progress={failed} width={80} theme={theme} />)).toBe(
      box(['VACUUM (ANALYZE) public.orders', '', 'failed  1. vacuum and analyze public.orders', '           canceling statement due to lock timeout', '', 'failed; esc to close'], 80),
    );
  });

  it('draws the bar in exactly the width', () => {
    expect(progressBar(0, 12, ascii)).toBe('_______   0%');
    expect(progressBar(1, 12, ascii)).toBe('####### 100%');
    expect(progressBar(0.5, 15, theme)).toBe('█████▁▁▁▁▁  50%');
    expect(progressBar(7, 12, ascii)).toBe('####### 100%');
  });
});

describe('HelpOverlay', () => {
  it('lists every command of the keymap with its keys, danger and what it needs (200 columns)', () => {
    const text = frame200(<HelpOverlay commands={commands} width={200} height={120} scroll={0} theme={theme} />);
    const lines = text.split('\n');
    for (const command of commands) {
      const line = lines.find((candidate) => candidate.includes(command.description));
      expect(line, command.id).toBeDefined();
      expect(line!.startsWith(command.keys.map(keyLabel).join(', ')), command.id).toBe(true);
      expect(line!.endsWith('(dangerous)'), command.id).toBe(command.dangerous);
      if (command.whyDisabled !== undefined) expect(lines[lines.indexOf(line!) + 1]?.trim(), command.id).toBe(command.whyDisabled);
    }
    expect(lines[0]).toBe('Key bindings (esc to close)');
    expect(lines.filter((line) => /^[A-Z][a-z]/.test(line) && !line.includes('  '))).toEqual([
      'Key bindings (esc to close)',
      'Everywhere',
      'Lists (every view with rows)',
      'Sessions (Activity and Locks)',
      'Tables',
      'Alerts',
      'Backups',
      'Replication',
      'Dialogs and prompts',
    ]);
  });

  it('leaves out what read-only mode removes', () => {
    const text = frame200(<HelpOverlay commands={effectiveCommands({ readOnly: true })} width={200} height={80} scroll={0} theme={theme} />);
    expect(text).not.toContain('(dangerous)');
    expect(text).not.toContain('Tables\n');
    expect(text).toContain('Tag or untag the selected session');
  });

  it('fits 80×20, wrapping long descriptions under their column, and shows the position', () => {
    expect(frame(<HelpOverlay commands={commands} width={80} height={20} scroll={0} theme={theme} />)).toBe(
      [
        'Key bindings (esc to close)                                             1-19/105',
        'Everywhere',
        'q, ^C      Quit and restore the terminal',
        '?          Show every key binding',
        '^L         Redraw the screen',
        'p          Pause or resume refreshing',
        ':          Command palette: a view name (:locks, :activity…) or an alias',
        '           (:bloat, :slow)',
        'c          Switch cluster or node',
        '           needs more than one node in the config',
        'tab        Next view',
        'shift-tab  Previous view',
        '1          Overview',
        '2          Activity: every session',
        '3          Pool: connection slots and PgBouncer pools',
        '4          Locks: the blocking tree',
        '5          Tables: bloat, dead tuples, vacuum',
        '6          Replication: standbys, slots, archiver',
        '7          Queries: pg_stat_statements',
        '8          Alerts: firing, pending, unknown, silenced and acknowledged, recent',
      ].join('\n'),
    );
  });

  it('scrolls to the last page and no further', () => {
    expect(frame(<HelpOverlay commands={commands} width={80} height={10} scroll={1000} theme={theme} />)).toBe(
      [
        'Key bindings (esc to close)                                           97-105/105',
        "esc        Stop this cluster's running switchover, failover or rejoin (asks",
        '           first)',
        '           needs a running job',
        '',
        'Dialogs and prompts',
        'enter      Confirm (after typing what is asked, when asked)',
        'esc        Close the dialog or prompt without acting',
        'y          Run the plan shown (low and medium danger)',
        'n          Decline the plan shown (nothing is done; it is logged)',
      ].join('\n'),
    );
  });

  it('keeps every line within the width', () => {
    for (const width of [40, 80, 200]) {
      for (const line of helpLines(commands, width)) expect(displayWidth(line.map((run) => run.text).join('')), `${width}`).toBeLessThanOrEqual(width);
    }
  });
});
