import { describe, expect, it } from 'vitest';
import { snakeCase, toJsonValue } from '../../src/format/json.js';
import { renderReport } from '../../src/format/report.js';
import { displayWidth, fit, renderTextTable, truncate } from '../../src/format/text-table.js';
import { formatBytes, formatDuration, formatPercent, formatRate, parseLsn } from '../../src/format/units.js';

describe('units', () => {
  it.each([
    [null, '-'], [0, '0 B'], [1023, '1023 B'], [1536, '1.50 kB'], [10 * 1024 * 1024, '10.0 MB'], [5 * 1024 ** 3, '5.00 GB'], [-2048, '-2.00 kB'],
  ])('formatBytes(%s) = %s', (input, expected) => {
    expect(formatBytes(input)).toBe(expected);
  });

  it.each([
    [null, '-'], [0.25, '250ms'], [4.5, '4.5s'], [42, '42s'], [187, '3m07s'], [7500, '2h05m'], [3 * 86_400 + 4 * 3600, '3d04h'],
  ])('formatDuration(%s) = %s', (input, expected) => {
    expect(formatDuration(input)).toBe(expected);
  });

  it('formats percentages and rates, unknown as "-"', () => {
    expect(formatPercent(0.1234)).toBe('12.3%');
    expect(formatPercent(null)).toBe('-');
    expect(formatRate(1234.4)).toBe('1234/s');
    expect(formatRate(0.5)).toBe('0.50/s');
  });

  it('parses LSNs into byte positions', () => {
    expect(parseLsn('0/0')).toBe(0);
    expect(parseLsn('1/0')).toBe(2 ** 32);
    expect(parseLsn('16/B374D848') - parseLsn('16/B374D000')).toBe(0x848);
    expect(() => parseLsn('nope')).toThrow(/not an LSN/);
  });
});

describe('text tables', () => {
  it('measures wide characters and truncates with an ellipsis', () => {
    expect(displayWidth('abc')).toBe(3);
    expect(displayWidth('日本')).toBe(4);
    expect(truncate('日本語のテキスト', 7)).toBe('日本語…');
    expect(displayWidth(fit('日本語', 8))).toBe(8);
    expect(truncate('line1\nline2', 20)).toBe('line1 line2');
  });

  it('aligns columns under their titles', () => {
    const text = renderTextTable(
      [{ title: 'pid', align: 'right', maxWidth: 10 }, { title: 'query', align: 'left', maxWidth: 8 }],
      [['1', 'select 1'], ['12345', 'select * from t']],
    );
    expect(text.split('\n')).toEqual(['  pid  query', '    1  select 1', '12345  select …']);
  });
});

describe('report', () => {
  it('renders fields, nested records and lists, formatting by field name', () => {
    const text = renderReport({
      role: 'primary',
      uptimeSeconds: 3700,
      cacheHitFraction: 0.99,
      sizeBytes: 2048,
      lag: { replayBytes: null },
      sessions: [{ pid: 7, blockedBy: [1, 2], query: 'select 1' }],
    });
    expect(text).toContain('role: primary');
    expect(text).toContain('uptime seconds: 1h01m');
    expect(text).toContain('cache hit fraction: 99.0%');
    expect(text).toContain('size bytes: 2.00 kB');
    expect(text).toContain('lag\n  replay bytes: -');
    expect(text).toContain('sessions (1)\npid  blocked by  query\n  7  1,2         select 1');
  });
});

describe('json', () => {
  it('uses snake_case keys, ISO dates and null for unknown', () => {
    expect(snakeCase('xactSeconds')).toBe('xact_seconds');
    expect(snakeCase('blockedBy')).toBe('blocked_by');
    expect(snakeCase('pid')).toBe('pid');
    expect(toJsonValue({ blockedBy: [1], at: new Date('2026-01-02T03:04:05Z'), lagSeconds: undefined, ratio: Number.NaN })).toEqual({
      blocked_by: [1],
      at: '2026-01-02T03:04:05.000Z',
      lag_seconds: null,
      ratio: null,
    });
  });
});
