// The cron parser of backup schedules (issue 5 item 7): a table of expressions with their next and
// previous runs, the either-day rule, daylight-saving changes in Europe/Paris, and expressions that
// can never run.
import { describe, expect, it } from 'vitest';
import { CronError, nextRun, parseCron, previousRun, requireNextRun } from '../../src/backup/cron.js';
import { UserError } from '../../src/errors.js';

const iso = (date: Date | undefined): string | undefined => date?.toISOString();

describe('nextRun and previousRun (UTC)', () => {
  // [expression, reference instant, next run after it, previous run before it]
  const table: [string, string, string, string][] = [
    ['0 3 * * *', '2026-11-27T18:00:00Z', '2026-11-28T03:00:00.000Z', '2026-11-27T03:00:00.000Z'],
    ['0 3 * * *', '2026-11-27T03:00:00Z', '2026-11-28T03:00:00.000Z', '2026-11-26T03:00:00.000Z'],
    ['* * * * *', '2026-11-27T18:00:30Z', '2026-11-27T18:01:00.000Z', '2026-11-27T18:00:00.000Z'],
    ['*/15 * * * *', '2026-11-27T18:07:00Z', '2026-11-27T18:15:00.000Z', '2026-11-27T18:00:00.000Z'],
    ['5-10/2 8-18 * * *', '2026-11-27T18:10:00Z', '2026-11-28T08:05:00.000Z', '2026-11-27T18:09:00.000Z'],
    ['0 0 1,15 * *', '2026-11-27T00:00:00Z', '2026-12-01T00:00:00.000Z', '2026-11-15T00:00:00.000Z'],
    ['30 4 * * mon-fri', '2026-11-27T05:00:00Z', '2026-11-30T04:30:00.000Z', '2026-11-27T04:30:00.000Z'],
    ['0 12 * jan,jul sun', '2026-11-27T00:00:00Z', '2027-01-03T12:00:00.000Z', '2026-07-26T12:00:00.000Z'],
    ['0 0 * * 7', '2026-11-27T00:00:00Z', '2026-11-29T00:00:00.000Z', '2026-11-22T00:00:00.000Z'],
    ['0 0 31 * *', '2026-11-27T00:00:00Z', '2026-12-31T00:00:00.000Z', '2026-10-31T00:00:00.000Z'],
    ['0 0 29 2 *', '2026-03-01T00:00:00Z', '2028-02-29T00:00:00.000Z', '2024-02-29T00:00:00.000Z'],
    ['59 23 31 12 *', '2026-12-31T23:59:00Z', '2027-12-31T23:59:00.000Z', '2025-12-31T23:59:00.000Z'],
    ['@hourly', '2026-11-27T18:00:00Z', '2026-11-27T19:00:00.000Z', '2026-11-27T17:00:00.000Z'],
    ['@daily', '2026-11-27T18:00:00Z', '2026-11-28T00:00:00.000Z', '2026-11-27T00:00:00.000Z'],
    ['@weekly', '2026-11-27T18:00:00Z', '2026-11-29T00:00:00.000Z', '2026-11-22T00:00:00.000Z'],
    ['@monthly', '2026-11-27T18:00:00Z', '2026-12-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z'],
    // Both day fields restricted: either matches (the 13th, or any Friday).
    ['0 0 13 * fri', '2026-11-14T00:00:00Z', '2026-11-20T00:00:00.000Z', '2026-11-13T00:00:00.000Z'],
    // A day of week with "*" in day-of-month: only that weekday.
    ['0 0 * * fri', '2026-11-14T00:00:00Z', '2026-11-20T00:00:00.000Z', '2026-11-13T00:00:00.000Z'],
    // "*/2" in day-of-month counts as unrestricted: both must match (odd days that are Mondays).
    ['0 0 */2 * mon', '2026-11-27T00:00:00Z', '2026-12-07T00:00:00.000Z', '2026-11-23T00:00:00.000Z'],
  ];
  for (const [expression, at, next, previous] of table) {
    it(`${expression} around ${at}`, () => {
      expect(iso(nextRun(expression, new Date(at)))).toBe(next);
      expect(iso(previousRun(expression, new Date(at)))).toBe(previous);
    });
  }

  it('accepts a parsed schedule as well as its text, and names in any case', () => {
    const schedule = parseCron('0 6 * DEC Sat');
    expect(iso(nextRun(schedule, new Date('2026-11-27T00:00:00Z')))).toBe('2026-12-05T06:00:00.000Z');
  });
});

describe('time zones and daylight saving (Europe/Paris)', () => {
  const paris = 'Europe/Paris';

  it('reads the fields as Paris wall-clock time, winter (UTC+1) and summer (UTC+2)', () => {
    expect(iso(nextRun('0 3 * * *', new Date('2026-11-27T12:00:00Z'), paris))).toBe('2026-11-28T02:00:00.000Z');
    expect(iso(nextRun('0 3 * * *', new Date('2026-06-10T12:00:00Z'), paris))).toBe('2026-06-11T01:00:00.000Z');
  });

  it('spring forward (29 March 2026, 02:00 → 03:00): a daily job at 02:30 runs when the clock jumps, once', () => {
    const next = nextRun('30 2 * * *', new Date('2026-03-28T12:00:00Z'), paris);
    expect(iso(next)).toBe('2026-03-29T01:00:00.000Z'); // 03:00 CEST
    expect(iso(nextRun('30 2 * * *', next!, paris))).toBe('2026-03-30T00:30:00.000Z');
    expect(iso(previousRun('30 2 * * *', new Date('2026-03-29T12:00:00Z'), paris))).toBe('2026-03-29T01:00:00.000Z');
  });

  it('spring forward: an hourly job has no run in the skipped hour', () => {
    const runs: string[] = [];
    let at = new Date('2026-03-28T23:30:00Z');
    for (let index = 0; index < 3; index++) {
      at = nextRun('0 * * * *', at, paris)!;
      runs.push(at.toISOString());
    }
    // 01:00 CET, then 03:00 CEST (02:00 does not exist), then 04:00 CEST: one hour apart in real time.
    expect(runs).toEqual(['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']);
  });

  it('fall back (25 October 2026, 03:00 → 02:00): a daily job at 02:30 runs once, at the first 02:30', () => {
    const first = nextRun('30 2 * * *', new Date('2026-10-24T12:00:00Z'), paris);
    expect(iso(first)).toBe('2026-10-25T00:30:00.000Z'); // 02:30 CEST
    expect(iso(nextRun('30 2 * * *', first!, paris))).toBe('2026-10-26T01:30:00.000Z'); // the next day, 02:30 CET
    expect(iso(previousRun('30 2 * * *', new Date('2026-10-25T12:00:00Z'), paris))).toBe('2026-10-25T00:30:00.000Z');
  });

  it('fall back: an every-30-minutes job runs in both occurrences of the repeated hour', () => {
    const runs: string[] = [];
    let at = new Date('2026-10-24T23:50:00Z');
    for (let index = 0; index < 5; index++) {
      at = nextRun('*/30 * * * *', at, paris)!;
      runs.push(at.toISOString());
    }
    expect(runs).toEqual([
      '2026-10-25T00:00:00.000Z', // 02:00 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T01:00:00.000Z', // 02:00 CET
      '2026-10-25T01:30:00.000Z', // 02:30 CET
      '2026-10-25T02:00:00.000Z', // 03:00 CET
    ]);
    expect(iso(previousRun('*/30 * * * *', new Date('2026-10-25T01:10:00Z'), paris))).toBe('2026-10-25T01:00:00.000Z');
  });

  it('rejects an unknown zone with the fix', () => {
    expect(() => nextRun('0 3 * * *', new Date(), 'Europe/Pariss')).toThrow(/unknown time zone "Europe\/Pariss"/);
  });
});

describe('errors name the field and the fix', () => {
  const bad: [string, RegExp, RegExp][] = [
    ['0 3 * *', /has 4 fields, not 5/, /minute hour day-of-month month day-of-week/],
    ['60 3 * * *', /minute field has 60, outside 0–59/, /values from 0 to 59/],
    ['0 24 * * *', /hour field has 24, outside 0–23/, /values from 0 to 23/],
    ['0 3 0 * *', /day of month field has 0, outside 1–31/, /values from 1 to 31/],
    ['0 3 * 13 *', /month field has 13/, /values from 1 to 12/],
    ['0 3 * * 8', /day of week field has 8/, /values from 0 to 7/],
    ['0 3 * foo *', /month field has "foo", which is not a number or a name/, /jan/],
    ['*/0 * * * *', /step "0"/, /positive|from 1/],
    ['0 20-4 * * *', /runs backwards/, /lower value first/],
    ['0 3,,4 * * *', /empty list item/, /extra comma/],
    ['@fortnightly', /not a known shorthand/, /@hourly/],
    ['0 0 30 2 *', /never runs: day 30 does not occur in feb/, /a day that the month has/],
    ['0 0 31 apr,jun,sep,nov *', /never runs: day 31 does not occur in apr, jun, sep, nov/, /a day that the month has/],
  ];
  for (const [expression, problem, fix] of bad) {
    it(expression, () => {
      let caught: unknown;
      try {
        parseCron(expression);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(CronError);
      expect(caught).toBeInstanceOf(UserError);
      expect((caught as CronError).message).toMatch(problem);
      expect((caught as CronError).fix).toMatch(fix);
    });
  }

  it('31 in months that have it is fine; with a restricted weekday, 30 feb still runs on that weekday', () => {
    expect(() => parseCron('0 0 31 jan,apr *')).not.toThrow();
    expect(iso(nextRun('0 0 30 feb mon', new Date('2026-01-01T00:00:00Z')))).toBe('2026-02-02T00:00:00.000Z');
  });

  it('says so clearly when no run falls within five years (29 February around 2100)', () => {
    const after = new Date('2097-03-01T00:00:00Z');
    expect(nextRun('0 0 29 2 *', after)).toBeUndefined();
    expect(() => requireNextRun('0 0 29 2 *', after)).toThrow(/"0 0 29 2 \*" has no run in the 5 years after 2097-03-01/);
    expect(iso(nextRun('0 0 29 2 *', new Date('2095-03-01T00:00:00Z')))).toBe('2096-02-29T00:00:00.000Z');
  });
});
