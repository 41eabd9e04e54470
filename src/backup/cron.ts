/**
 * Cron schedules for backups, logical dumps and drills (issue 5 item 7): the classic five fields
 * `minute hour day-of-month month day-of-week`, with lists (1,15), ranges (1-5), steps (*\/15,
 * 8-18/2), names (jan–dec, sun–sat; 7 is Sunday too) and @hourly, @daily (@midnight), @weekly,
 * @monthly, @yearly (@annually). No dependency.
 *
 * Semantics are Vixie cron's: when both day fields are restricted (neither starts with "*"), a day
 * matches when EITHER matches ("0 0 1,15 * mon" is the 1st, the 15th and every Monday); otherwise
 * both must. Times are wall-clock times in a time zone (IANA name, via Intl), and daylight-saving
 * changes follow cronie: a fixed-time job whose time falls in the skipped hour runs when the clock
 * jumps (02:30 on the spring-forward night runs at 03:00), and runs once, at the first occurrence,
 * in the repeated hour; a job whose hour field is "*" simply follows the clock (nothing in the
 * skipped hour, both occurrences of the repeated one).
 */
import { UserError } from '../errors.js';

/** A cron expression that cannot be parsed or can never match; the message names the field and the fix. */
export class CronError extends UserError {
  constructor(message: string, readonly fix: string) {
    super(message, fix);
  }
}

/** A parsed cron expression. */
export interface CronSchedule {
  /** The text as written. */
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 = Sunday … 6 = Saturday (7 is folded into 0). */
  readonly daysOfWeek: ReadonlySet<number>;
  /** The field does not start with "*": it takes part in the either-day rule. */
  readonly dayOfMonthRestricted: boolean;
  readonly dayOfWeekRestricted: boolean;
  /** The hour field starts with "*": DST changes follow the clock (see the file comment). */
  readonly everyHour: boolean;
}

/** How far nextRun/previousRun search before answering "never". */
export const searchYears = 5;

const macros: Readonly<Record<string, string>> = {
  '@hourly': '0 * * * *',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@weekly': '0 0 * * 0',
  '@monthly': '0 0 1 * *',
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
};

const monthNames = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const dayNames = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
// The most days each month can have (February: 29, in leap years).
const maxDaysInMonth = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

interface FieldSpec {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
  readonly namesStart?: number;
  readonly example: string;
}

const fields: readonly FieldSpec[] = [
  { name: 'minute', min: 0, max: 59, example: '0, 30 or */15' },
  { name: 'hour', min: 0, max: 23, example: '3, 8-18 or */6' },
  { name: 'day of month', min: 1, max: 31, example: '1, 1,15 or *' },
  { name: 'month', min: 1, max: 12, names: monthNames, namesStart: 1, example: '1-12, jan or */3' },
  { name: 'day of week', min: 0, max: 7, names: dayNames, namesStart: 0, example: '1-5, mon-fri or sun' },
];

const formatHint = 'write five fields "minute hour day-of-month month day-of-week", e.g. "0 3 * * *" (daily at 03:00), or @hourly, @daily, @weekly';

function parseValue(field: FieldSpec, text: string, whole: string): number {
  const lower = text.toLowerCase();
  if (field.names !== undefined) {
    const index = field.names.indexOf(lower);
    if (index >= 0) return index + (field.namesStart ?? 0);
  }
  if (!/^\d+$/.test(text)) {
    throw new CronError(`"${whole}": the ${field.name} field has "${text}", which is not a number${field.names === undefined ? '' : ' or a name'}`, `use ${field.example}`);
  }
  const value = Number(text);
  if (value < field.min || value > field.max) {
    throw new CronError(`"${whole}": the ${field.name} field has ${value}, outside ${field.min}–${field.max}`, `use values from ${field.min} to ${field.max}, e.g. ${field.example}`);
  }
  return value;
}

function parseField(field: FieldSpec, text: string, whole: string): Set<number> {
  const values = new Set<number>();
  for (const part of text.split(',')) {
    if (part === '') throw new CronError(`"${whole}": the ${field.name} field has an empty list item`, `remove the extra comma; e.g. ${field.example}`);
    const [range = '', stepText, ...extra] = part.split('/');
    if (extra.length > 0) throw new CronError(`"${whole}": the ${field.name} field has more than one "/" in "${part}"`, `write a step once, e.g. */15`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) {
        throw new CronError(`"${whole}": the ${field.name} field has step "${stepText}", which is not a positive whole number`, 'write the step as a number from 1, e.g. */15');
      }
      step = Number(stepText);
    }
    let from: number;
    let to: number;
    if (range === '*') {
      from = field.min;
      to = field.max === 7 ? 6 : field.max;
    } else {
      const [low = '', high, ...more] = range.split('-');
      if (more.length > 0) throw new CronError(`"${whole}": the ${field.name} field has a malformed range "${range}"`, `write a range as low-high, e.g. ${field.example}`);
      from = parseValue(field, low, whole);
      // "5/10" means 5-max/10, as in cronie.
      to = high === undefined ? (stepText === undefined ? from : field.max) : parseValue(field, high, whole);
      if (to < from) {
        throw new CronError(`"${whole}": the ${field.name} field has the range ${range}, which runs backwards`, `write the lower value first (ranges do not wrap), e.g. a list such as 22,23,0,1`);
      }
    }
    for (let value = from; value <= to; value += step) values.add(field.max === 7 && value === 7 ? 0 : value);
  }
  return values;
}

/** Parses a cron expression; throws CronError naming the field and the fix, also for dates that never occur (30 feb). */
export function parseCron(expression: string): CronSchedule {
  const source = expression;
  const trimmed = expression.trim();
  const expanded = trimmed.startsWith('@') ? macros[trimmed.toLowerCase()] : trimmed;
  if (expanded === undefined) throw new CronError(`"${expression}" is not a known shorthand`, `use one of ${Object.keys(macros).join(', ')}, or ${formatHint}`);
  const parts = expanded.split(/\s+/).filter((part) => part !== '');
  if (parts.length !== 5) {
    throw new CronError(`"${expression}" has ${parts.length} field${parts.length === 1 ? '' : 's'}, not 5`, formatHint);
  }
  const [minuteText = '', hourText = '', domText = '', monthText = '', dowText = ''] = parts;
  const [minuteSpec, hourSpec, domSpec, monthSpec, dowSpec] = fields as [FieldSpec, FieldSpec, FieldSpec, FieldSpec, FieldSpec];
  const schedule: CronSchedule = {
    source,
    minutes: parseField(minuteSpec, minuteText, expression),
    hours: parseField(hourSpec, hourText, expression),
    daysOfMonth: parseField(domSpec, domText, expression),
    months: parseField(monthSpec, monthText, expression),
    daysOfWeek: parseField(dowSpec, dowText, expression),
    dayOfMonthRestricted: !domText.startsWith('*'),
    dayOfWeekRestricted: !dowText.startsWith('*'),
    everyHour: hourText.startsWith('*'),
  };
  // With the day of week unrestricted (or both restricted, but then any weekday matches anyway),
  // days that no chosen month has would never match: say so now, not in five years.
  const byDayOfMonthOnly = schedule.dayOfMonthRestricted && !schedule.dayOfWeekRestricted;
  if (byDayOfMonthOnly && ![...schedule.months].some((month) => [...schedule.daysOfMonth].some((day) => day <= (maxDaysInMonth[month - 1] ?? 31)))) {
    const months = [...schedule.months].map((month) => monthNames[month - 1]).join(', ');
    throw new CronError(
      `"${expression}" never runs: day ${[...schedule.daysOfMonth].join(',')} does not occur in ${months}`,
      'choose a day that the month has (e.g. "L"-style last days are not supported: use 28 for February)',
    );
  }
  return schedule;
}

// Naive times: the wall clock of a zone written as if it were UTC, in ms, so that calendar
// arithmetic is plain Date.UTC arithmetic.
const minute = 60_000;
const hour = 60 * minute;
const day = 24 * hour;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let format = formatters.get(timeZone);
  if (format === undefined) {
    try {
      format = new Intl.DateTimeFormat('en-US', {
        timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
      });
    } catch {
      throw new CronError(`unknown time zone "${timeZone}"`, 'use an IANA zone name such as "Europe/Paris", "America/New_York" or "UTC"');
    }
    formatters.set(timeZone, format);
  }
  return format;
}

/** The wall clock in `timeZone` at instant `ms`, as a naive time (whole seconds). */
function naiveAt(ms: number, timeZone: string): number {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timeZone).formatToParts(new Date(ms))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return Date.UTC(parts['year'] ?? 1970, (parts['month'] ?? 1) - 1, parts['day'] ?? 1, parts['hour'] ?? 0, parts['minute'] ?? 0, parts['second'] ?? 0);
}

function offsetAt(ms: number, timeZone: string): number {
  return naiveAt(ms, timeZone) - Math.floor(ms / 1000) * 1000;
}

/**
 * The instants at which a run scheduled at naive time `naive` fires: one normally; in the repeated
 * hour the first occurrence, and the second too when the job runs every hour; in the skipped hour
 * the moment the clock jumps, unless the job runs every hour.
 */
function firings(naive: number, schedule: CronSchedule, timeZone: string): number[] {
  const offsets = new Set([offsetAt(naive - 36 * hour, timeZone), offsetAt(naive, timeZone), offsetAt(naive + 36 * hour, timeZone)]);
  const instants = [...offsets].map((offset) => naive - offset).filter((instant) => naiveAt(instant, timeZone) === naive).sort((a, b) => a - b);
  const unique = instants.filter((instant, index) => instants[index - 1] !== instant);
  if (unique.length > 0) return schedule.everyHour ? unique : unique.slice(0, 1);
  if (schedule.everyHour) return [];
  // In the gap: the transition lies between naive - (offset after) and naive - (offset before).
  const before = offsetAt(naive - 36 * hour, timeZone);
  let low = naive - offsetAt(naive + 36 * hour, timeZone);
  let high = naive - before;
  while (high - low > 1000) {
    const middle = Math.floor((low + high) / 2000) * 1000;
    if (offsetAt(middle, timeZone) === before) low = middle;
    else high = middle;
  }
  return [high];
}

function fieldsOf(naive: number): { month: number; dayOfMonth: number; dayOfWeek: number; hour: number; minute: number } {
  const date = new Date(naive);
  return { month: date.getUTCMonth() + 1, dayOfMonth: date.getUTCDate(), dayOfWeek: date.getUTCDay(), hour: date.getUTCHours(), minute: date.getUTCMinutes() };
}

function dayMatches(schedule: CronSchedule, dayOfMonth: number, dayOfWeek: number): boolean {
  const dom = schedule.daysOfMonth.has(dayOfMonth);
  const dow = schedule.daysOfWeek.has(dayOfWeek);
  return schedule.dayOfMonthRestricted && schedule.dayOfWeekRestricted ? dom || dow : dom && dow;
}

/** The first matching naive minute at or after `naive`, or undefined past `limit`. */
function nextNaive(schedule: CronSchedule, start: number, limit: number): number | undefined {
  let naive = Math.ceil(start / minute) * minute;
  while (naive <= limit) {
    const f = fieldsOf(naive);
    const date = new Date(naive);
    if (!schedule.months.has(f.month)) {
      naive = Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
    } else if (!dayMatches(schedule, f.dayOfMonth, f.dayOfWeek)) {
      naive = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1);
    } else if (!schedule.hours.has(f.hour)) {
      naive = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate(), date.getUTCHours() + 1);
    } else if (!schedule.minutes.has(f.minute)) {
      naive += minute;
    } else {
      return naive;
    }
  }
  return undefined;
}

/** The last matching naive minute at or before `start`, or undefined before `limit`. */
function previousNaive(schedule: CronSchedule, start: number, limit: number): number | undefined {
  let naive = Math.floor(start / minute) * minute;
  while (naive >= limit) {
    const f = fieldsOf(naive);
    const date = new Date(naive);
    if (!schedule.months.has(f.month)) {
      naive = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1) - minute;
    } else if (!dayMatches(schedule, f.dayOfMonth, f.dayOfWeek)) {
      naive = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()) - minute;
    } else if (!schedule.hours.has(f.hour)) {
      naive = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate(), date.getUTCHours()) - minute;
    } else if (!schedule.minutes.has(f.minute)) {
      naive -= minute;
    } else {
      return naive;
    }
  }
  return undefined;
}

// Wall clocks move by at most a few hours around an instant (DST shifts are 2 h at most).
const slack = 3 * hour;

/** How far to look around a naive time: 0 when the zone's offset is the same for 36 h either side. */
function slackAround(naive: number, timeZone: string): number {
  return offsetAt(naive - 36 * hour, timeZone) === offsetAt(naive + 36 * hour, timeZone) ? 0 : slack;
}

function scheduleOf(expression: string | CronSchedule): CronSchedule {
  return typeof expression === 'string' ? parseCron(expression) : expression;
}

/**
 * The first run strictly after `after`, in `timeZone` (default UTC); undefined when none falls
 * within the next five years (29 feb between 2096 and 2104, for instance).
 */
export function nextRun(expression: string | CronSchedule, after: Date, timeZone = 'UTC'): Date | undefined {
  const schedule = scheduleOf(expression);
  const afterMs = after.getTime();
  const limit = naiveAt(afterMs, timeZone) + searchYears * 366 * day;
  let best: number | undefined;
  let bestNaive = 0;
  let bestSlack = 0;
  const start = naiveAt(afterMs, timeZone);
  let cursor = start - slackAround(start, timeZone);
  for (;;) {
    const naive = nextNaive(schedule, cursor, limit);
    if (naive === undefined || (best !== undefined && naive > bestNaive + bestSlack)) break;
    for (const instant of firings(naive, schedule, timeZone)) {
      if (instant > afterMs && (best === undefined || instant < best)) {
        best = instant;
        bestNaive = naive;
        bestSlack = slackAround(naive, timeZone);
      }
    }
    cursor = naive + minute;
  }
  return best === undefined ? undefined : new Date(best);
}

/** The last run strictly before `before`, in `timeZone` (default UTC); undefined when none in the past five years. */
export function previousRun(expression: string | CronSchedule, before: Date, timeZone = 'UTC'): Date | undefined {
  const schedule = scheduleOf(expression);
  const beforeMs = before.getTime();
  const limit = naiveAt(beforeMs, timeZone) - searchYears * 366 * day;
  let best: number | undefined;
  let bestNaive = 0;
  let bestSlack = 0;
  const start = naiveAt(beforeMs, timeZone);
  let cursor = start + slackAround(start, timeZone);
  for (;;) {
    const naive = previousNaive(schedule, cursor, limit);
    if (naive === undefined || (best !== undefined && naive < bestNaive - bestSlack)) break;
    for (const instant of firings(naive, schedule, timeZone)) {
      if (instant < beforeMs && (best === undefined || instant > best)) {
        best = instant;
        bestNaive = naive;
        bestSlack = slackAround(naive, timeZone);
      }
    }
    cursor = naive - minute;
  }
  return best === undefined ? undefined : new Date(best);
}

/** Like nextRun, but a schedule with no run in five years is an error saying so. */
export function requireNextRun(expression: string | CronSchedule, after: Date, timeZone = 'UTC'): Date {
  const schedule = scheduleOf(expression);
  const next = nextRun(schedule, after, timeZone);
  if (next === undefined) {
    throw new CronError(`"${schedule.source}" has no run in the ${searchYears} years after ${after.toISOString()}`, 'check the day-of-month, month and day-of-week fields: they never coincide');
  }
  return next;
}
