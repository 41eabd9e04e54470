/**
 * The figures of bench/watch-scale, computed from what the watcher process reports (pure): one row
 * per round of evaluations (wall time for every cluster to be evaluated, CPU and RSS of the
 * process) and min / median / max of the fault-to-mail trials.
 */

/** CPU (user + system, ms since the process started) and memory of the watcher process. */
export interface Usage {
  readonly cpuMs: number;
  readonly rss: number;
  readonly heapUsed: number;
}

/** The first evaluation of a tick that starts evaluations: a round begins. */
export interface RoundStart extends Usage {
  readonly type: 'round';
  readonly at: number;
  /** Evaluations the process had started before this round. */
  readonly startedBefore: number;
}

/** One node evaluation, timed around the watcher's own evaluateNode. */
export interface EvaluationTimed {
  readonly type: 'eval';
  readonly cluster: string;
  readonly due: readonly string[];
  readonly start: number;
  readonly end: number;
  /** The evaluation threw (the watcher logs it and carries on). */
  readonly failed: boolean;
  /** The server probe failed, so only connectivity was evaluated. */
  readonly down: boolean;
  /** Findings that say a check could not run, and why. */
  readonly unknown: readonly { readonly check: string; readonly message: string }[];
}

export type ChildMessage =
  | RoundStart
  | EvaluationTimed
  | { readonly type: 'started'; readonly before: Usage; readonly after: Usage }
  | { readonly type: 'log'; readonly line: string }
  | ({ readonly type: 'stopped'; readonly maxRss: number } & Usage);

export interface RoundFigure {
  readonly index: number;
  /** From this round's start to the next one's. */
  readonly intervalMs: number;
  readonly evaluations: number;
  /** From the round's start until its last evaluation finished. */
  readonly wallMs: number;
  readonly evaluationMedianMs: number;
  readonly evaluationMaxMs: number;
  /** CPU of the whole process over the interval (evaluations, engine steps, state saves, idle ticks). */
  readonly cpuMs: number;
  /** RSS at the end of the interval. */
  readonly rss: number;
  readonly heapUsed: number;
  readonly down: number;
  readonly unknownFindings: number;
  readonly cadences: string;
}

/** Rounds that are complete: started, followed by another round start, every evaluation finished. */
export function roundFigures(starts: readonly RoundStart[], evaluations: readonly EvaluationTimed[], gapMs: number): RoundFigure[] {
  const figures: RoundFigure[] = [];
  for (let index = 0; index + 1 < starts.length; index++) {
    const start = starts[index]!;
    const next = starts[index + 1]!;
    const mine = evaluations.filter((evaluation) => evaluation.start >= start.at && evaluation.start - start.at <= gapMs);
    if (mine.length === 0) continue;
    const durations = mine.map((evaluation) => evaluation.end - evaluation.start);
    figures.push({
      index,
      intervalMs: next.at - start.at,
      evaluations: mine.length,
      wallMs: Math.max(...mine.map((evaluation) => evaluation.end)) - start.at,
      evaluationMedianMs: median(durations),
      evaluationMaxMs: Math.max(...durations),
      cpuMs: next.cpuMs - start.cpuMs,
      rss: next.rss,
      heapUsed: next.heapUsed,
      down: mine.filter((evaluation) => evaluation.down || evaluation.failed).length,
      unknownFindings: mine.reduce((sum, evaluation) => sum + evaluation.unknown.length, 0),
      cadences: [...new Set(mine.flatMap((evaluation) => evaluation.due))].join('+'),
    });
  }
  return figures;
}

/** The checks that could not run, each with one of its messages. */
export function unknownChecks(evaluations: readonly EvaluationTimed[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const evaluation of evaluations) for (const { check, message } of evaluation.unknown) if (!out.has(check)) out.set(check, message);
  return out;
}

/** The median of some numbers (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Min, median and max. */
export function spread(values: readonly number[]): { readonly min: number; readonly median: number; readonly max: number } {
  return { min: Math.min(...values), median: median(values), max: Math.max(...values) };
}

/** Seconds with one decimal. */
export function s1(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** Mebibytes with one decimal. */
export function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

/** A text table: the header's column widths, right-aligned except the first column. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (row: readonly string[]): string => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  return [line(header), ...rows.map(line)];
}
