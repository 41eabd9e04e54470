import { describe, expect, it } from 'vitest';
import { render } from 'ink-testing-library';
import { clockTime, ProbeStatus, probeStatusLines, snapshotOf, staleNote } from '../../src/components/ProbeStatus.js';
import { Sparkline, sparkline } from '../../src/components/Sparkline.js';
import { makeTheme } from '../../src/components/theme.js';
import type { ProbeResult } from '../../src/probes/types.js';

const theme = makeTheme({ color: false, ascii: false });
const ascii = makeTheme({ color: false, ascii: true });
// Built from the escape character: a control character in a regex literal trips no-control-regex.
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const strip = (text: string | undefined): string => (text ?? '').replace(ansi, '');

interface Snap {
  readonly sessions: number;
}

const at = new Date(2024, 4, 17, 9, 3, 7);
const now = new Date(2024, 4, 17, 9, 4, 12);
const pending: ProbeResult<Snap> = { status: 'pending' };
const ok: ProbeResult<Snap> = { status: 'ok', durationMs: 12, snapshot: { sessions: 5 }, at };
const unsupported: ProbeResult<Snap> = {
  status: 'unsupported',
  unsupported: { kind: 'extension', reason: 'pg_stat_statements is not installed', fix: 'CREATE EXTENSION pg_stat_statements (and add it to shared_preload_libraries)' },
};
const stale: ProbeResult<Snap> = {
  status: 'error',
  error: { message: 'canceling statement due to statement timeout', hint: 'the server is overloaded', sqlstate: '57014' },
  since: now,
  last: { snapshot: { sessions: 4 }, at },
};
const failedNoData: ProbeResult<Snap> = { status: 'error', error: { message: 'connection refused', hint: undefined, sqlstate: undefined }, since: now, last: undefined };

const frame = (result: ProbeResult<Snap>, width?: number, withNow?: Date): string =>
  strip(render(<ProbeStatus result={result} theme={theme} what="statements" {...(width === undefined ? {} : { width })} {...(withNow === undefined ? {} : { now: withNow })} />).lastFrame());

describe('ProbeStatus', () => {
  it('renders nothing when the result is ok', () => {
    expect(frame(ok)).toBe('');
    expect(probeStatusLines(ok, theme, 'statements')).toEqual([]);
  });

  it('waits for the first snapshot', () => {
    expect(frame(pending)).toBe('waiting for the first statements snapshot…');
    expect(probeStatusLines(pending, ascii, 'statements')[0]?.text).toBe('waiting for the first statements snapshot...');
  });

  it('says why a probe is unsupported and how to fix it', () => {
    expect(frame(unsupported)).toBe(
      ['statements unavailable: pg_stat_statements is not installed', 'fix: CREATE EXTENSION pg_stat_statements (and add it to shared_preload_libraries)'].join('\n'),
    );
  });

  it('shows the error with its hint and the time of the stale data', () => {
    expect(frame(stale)).toBe(
      ['statements failed: canceling statement due to statement timeout (the server is overloaded)', 'showing data from 09:03:07 (stale)'].join('\n'),
    );
  });

  it('says how old the stale data is when given the time', () => {
    expect(frame(stale, undefined, now).split('\n')[1]).toBe('showing data from 09:03:07 (stale, 1m05s old)');
  });

  it('shows only the error when there is no earlier snapshot', () => {
    expect(frame(failedNoData)).toBe('statements failed: connection refused');
  });

  it('cuts each line to the width at 80 columns', () => {
    expect(frame(unsupported, 80)).toBe(
      ['statements unavailable: pg_stat_statements is not installed', 'fix: CREATE EXTENSION pg_stat_statements (and add it to shared_preload_libraries)'.slice(0, 79) + '…'].join('\n'),
    );
  });

  it('keeps whole lines at 200 columns', () => {
    expect(frame(stale, 200)).toBe(
      ['statements failed: canceling statement due to statement timeout (the server is overloaded)', 'showing data from 09:03:07 (stale)'].join('\n'),
    );
  });
});

describe('staleNote and snapshotOf', () => {
  it('notes stale data only for an error that kept a snapshot', () => {
    expect(staleNote(stale)).toBe('showing data from 09:03:07 (stale)');
    expect(staleNote(stale, now)).toBe('showing data from 09:03:07 (stale, 1m05s old)');
    expect(staleNote(ok, now)).toBeNull();
    expect(staleNote(pending, now)).toBeNull();
    expect(staleNote(failedNoData, now)).toBeNull();
  });

  it('gives the freshest snapshot and whether it is stale', () => {
    expect(snapshotOf(ok)).toEqual({ snapshot: { sessions: 5 }, at, stale: false });
    expect(snapshotOf(stale)).toEqual({ snapshot: { sessions: 4 }, at, stale: true });
    expect(snapshotOf(pending)).toBeUndefined();
    expect(snapshotOf(unsupported)).toBeUndefined();
    expect(snapshotOf(failedNoData)).toBeUndefined();
  });

  it('writes the clock with two digits per field', () => {
    expect(clockTime(new Date(2024, 0, 2, 3, 4, 5))).toBe('03:04:05');
  });
});

describe('sparkline', () => {
  const levels = theme.symbols.sparkline;

  it('scales the shown window from its minimum (lowest level) to its maximum (highest)', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8, levels)).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([100, 114, 200], 3, levels)).toBe('▁▂█');
  });

  it('shows only the last `width` values, scaled on those alone', () => {
    // 1000 is outside the window: it must not flatten the rest.
    expect(sparkline([1000, 10, 20, 30], 3, levels)).toBe('▁▅█');
  });

  it('draws a flat series at the lowest level', () => {
    expect(sparkline([7, 7, 7, 7], 4, levels)).toBe('▁▁▁▁');
  });

  it('pads on the left so that the newest value is at the right edge', () => {
    expect(sparkline([1, 2], 5, levels)).toBe('   ▁█');
  });

  it('is blank when there is nothing to show, and a gap for a missing value', () => {
    expect(sparkline([], 4, levels)).toBe('    ');
    expect(sparkline([1, Number.NaN, 3], 3, levels)).toBe('▁ █');
  });

  it('uses the ASCII levels of an ASCII theme', () => {
    expect(sparkline([0, 7], 2, ascii.symbols.sparkline)).toBe('_#');
  });

  it('renders as one line', () => {
    expect(strip(render(<Sparkline values={[3, 1, 2]} width={6} theme={theme} />).lastFrame())).toBe('   █▁▅');
  });
});
