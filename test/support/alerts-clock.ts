/** A controllable clock around stepEngine for the alert tests: plain Date values, no timers. */
import { initialEngineState, stepEngine } from '../../src/alerts/engine.js';
import type { AlertEvent, EngineConfig, EngineState, Evaluation, FindingInput, FindingSeverity, Notice, Team } from '../../src/alerts/types.js';

export const second = 1000;
export const minute = 60 * second;
export const hour = 60 * minute;

/** A finding of the given check with sensible context. */
export function finding(severity: FindingSeverity, subject = 'pid 42', checkId = 'idle_in_transaction', value: number | null = 400): FindingInput {
  return {
    checkId,
    severity,
    subject,
    value,
    threshold: severity === 'critical' ? 900 : 300,
    unit: 's',
    message: `${checkId} ${subject}`,
    context: { pid: 42, user: 'app', application: 'billing', client: '10.0.0.7', query: 'update accounts set …' },
    runbook: `docs/alerts.md#${checkId}`,
  };
}

/** One evaluation of one node, declaring the checks that ran. */
export function evaluation(findings: readonly FindingInput[], node = 'db1', cluster = 'prod', checks?: readonly string[]): Evaluation {
  return { cluster, node, checks: checks ?? [...new Set(findings.map((item) => item.checkId))], findings };
}

/** A team that takes everything immediately on one email channel. */
export function team(overrides: Partial<Team> = {}): Team {
  return { id: 'dba', members: ['dba@example.com'], channels: ['email'], minSeverity: 'warning', delivery: { mode: 'immediate' }, ...overrides };
}

/** Drives the engine: each call is one step at an absolute time. */
export class Clock {
  state: EngineState = initialEngineState();
  readonly notices: (Notice & { at: number })[] = [];
  readonly events: AlertEvent[] = [];

  constructor(
    readonly config: EngineConfig,
    readonly start: number,
  ) {}

  /** A step `offset` ms after the start; returns the notices of this step. */
  step(offset: number, evaluations: readonly Evaluation[] = []): Notice[] {
    const result = stepEngine(this.state, evaluations, this.config, new Date(this.start + offset));
    this.state = result.state;
    this.events.push(...result.events);
    this.notices.push(...result.notices.map((notice) => ({ ...notice, at: offset })));
    return [...result.notices];
  }

  /** Steps every `every` ms from `from` to `to` inclusive with no evaluations; returns all notices. */
  ticks(from: number, to: number, every = 10 * second): Notice[] {
    const out: Notice[] = [];
    for (let t = from; t <= to; t += every) out.push(...this.step(t));
    return out;
  }
}
