/**
 * The check contract. A check is data plus a pure evaluate(): probe results, thresholds and the
 * clock in, findings out. It never does I/O; the alert engine decides what fires and when
 * (two failing evaluations in a row, hysteresis below the warning level).
 */
import type { Results } from '../probes/runner.js';
import type { ProbeId } from '../probes/types.js';

export type Severity = 'ok' | 'info' | 'warning' | 'critical' | 'unknown';

/** fast: every minute; normal: every 5 minutes; slow: hourly. */
export type Cadence = 'fast' | 'normal' | 'slow';

/** The interval of each cadence, in milliseconds. */
export const cadenceMs: Readonly<Record<Cadence, number>> = { fast: 60_000, normal: 300_000, slow: 3_600_000 };

/** A session a finding is about, as a notice shows it. */
export interface FindingSession {
  readonly pid: number;
  readonly user: string | null;
  readonly application: string | null;
  readonly client: string | null;
  readonly query: string | null;
}

export interface FindingContext {
  readonly sessions?: readonly FindingSession[];
  /** The blocking tree, rendered one session per line (indented by depth). */
  readonly lockTree?: readonly string[];
  readonly lag?: { readonly bytes: number | null; readonly seconds: number | null };
  readonly details?: Readonly<Record<string, string | number | null>>;
}

export interface Finding {
  readonly checkId: string;
  readonly severity: Severity;
  /** What the finding is about: "pid 4242", "replica db2", "table public.t", "cluster"… */
  readonly subject: string;
  /** The measured figure, in `unit`; null when unknown. */
  readonly value: number | null;
  /** The threshold the value crossed (the warning threshold for ok and warning findings). */
  readonly threshold: number | null;
  /** The warning threshold in force, so the alert engine can resolve only below it (hysteresis). */
  readonly warningThreshold: number | null;
  /** seconds, bytes, fraction, count, ms, per minute… */
  readonly unit: string;
  /** One line: what, the value against the threshold. */
  readonly message: string;
  readonly context: FindingContext;
  /** Where the runbook is: "docs/alerts.md#<check id>". */
  readonly runbook: string;
}

/** Thresholds are named numbers; each check declares its own set and defaults. */
export type Thresholds = Readonly<Record<string, number>>;

export interface CheckInput<T extends Thresholds> {
  readonly results: Results;
  readonly thresholds: T;
  readonly now: Date;
  /** What nextState() returned at the previous evaluation (for rates and baselines); undefined at first. */
  readonly previous?: unknown;
}

export interface Runbook {
  /** What the alert means, in a sentence or two. */
  readonly summary: string;
  /** What the on-call engineer does, in order: look, act safely, escalate. */
  readonly steps: readonly string[];
}

export interface Check<T extends Thresholds = Thresholds> {
  /** Stable, kebab-case: it names alerts, silences, config overrides and the runbook anchor. */
  readonly id: string;
  readonly title: string;
  readonly description: string;
  readonly cadence: Cadence;
  /** The probes whose results evaluate() reads. */
  readonly probes: readonly ProbeId[];
  readonly defaults: T;
  /** The warning and critical conditions in words, for the given thresholds (the reference shows the defaults). */
  levels(thresholds: T): { readonly warning: string; readonly critical: string };
  evaluate(input: CheckInput<T>): Finding[];
  /** The state to pass as `previous` to the next evaluation, for checks that compare evaluations. */
  nextState?(input: CheckInput<T>): unknown;
  readonly runbook: Runbook;
}
