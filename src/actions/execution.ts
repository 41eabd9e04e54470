/**
 * The machinery every action shares: making a plan (and auditing a refusal), re-checking before
 * running, running steps with started/finished/failed events, and ending with one `done` event and
 * one audit line.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DbError } from '../db/errors.js';
import { DbSession } from '../db/session.js';
import type { Row } from '../db/types.js';
import { messageOf } from '../errors.js';
import { auditFailure, planSql, recordAction } from './audit.js';
import type { ActionBasis, ActionContext, ActionEvent, ActionId, ActionInputs, ActionListener, ActionOutcome, Danger, Plan, PlanStep } from './types.js';

/** application_name of the sessions actions run on; it starts with "pgwarden", so probes leave it out. */
export const actionApplicationName = 'pgwarden-action';

/** What an action's plan() fills in; the rest (id, time, input) is common. */
export interface PlanFields<A extends ActionId> {
  readonly title: string;
  readonly target: string;
  readonly danger: Danger;
  readonly steps: readonly PlanStep[];
  readonly confirmToken: string | null;
  readonly refused: string | null;
  readonly basis: ActionBasis[A];
}

/** Builds the plan; a refused plan is audited here, since it never reaches execute(). */
export async function makePlan<A extends ActionId>(action: A, input: ActionInputs[A], context: ActionContext, fields: PlanFields<A>): Promise<Plan<A>> {
  const plan: Plan<A> = { id: randomUUID(), action, input, createdAt: context.now?.() ?? new Date(), ...fields };
  if (plan.refused === null) return plan;
  try {
    await recordAction(context, plan, 'refused', plan.refused);
    return plan;
  } catch (error) {
    return { ...plan, refused: `${plan.refused} (and ${auditFailure(context.audit.path, error)})` };
  }
}

/** The refusal that read-only mode gives every action. */
export const readOnlyRefusal = 'read-only mode: pgwarden was started with --read-only';

/** A failure that is an answer, not an exception: the step did run but did not achieve its aim. */
export class StepFailed extends Error {
  override readonly name = 'StepFailed';
}

/** One execution of a plan: steps, events, the SQL sent, and the final outcome. */
export class Execution<A extends ActionId> {
  private readonly sent: string[] = [];
  private readonly startedAt: Date;

  constructor(
    readonly plan: Plan<A>,
    readonly context: ActionContext,
    private readonly listener: ActionListener,
  ) {
    this.startedAt = this.now();
  }

  /** The context's clock, or the real one. */
  now(): Date {
    return this.context.now?.() ?? new Date();
  }

  /** Sends an event to the listener, which may not interrupt the execution by throwing. */
  emit(event: ActionEvent): void {
    try {
      this.listener(event);
    } catch {
      // A broken listener must not leave a half-run action unaudited.
    }
  }

  /** The plan's step at index (a bug if absent). */
  stepAt(index: number): PlanStep {
    const step = this.plan.steps[index];
    if (step === undefined) throw new Error(`${this.plan.action}: the plan has no step ${index}`);
    return step;
  }

  /** Runs step `index`: started, then finished with the returned message, or failed with the error. */
  async step<T>(index: number, run: (step: PlanStep) => Promise<{ readonly value: T; readonly message: string }>): Promise<T> {
    const step = this.stepAt(index);
    this.emit({ kind: 'step', status: 'started', index, message: step.description });
    try {
      const { value, message } = await run(step);
      this.emit({ kind: 'step', status: 'finished', index, message });
      return value;
    } catch (error) {
      this.emit({ kind: 'step', status: 'failed', index, message: messageOf(error) });
      throw error;
    }
  }

  /** Runs step `index`'s SQL on the session and returns its rows. */
  async sql(index: number, session: DbSession, message: string | ((rows: readonly Row[]) => string)): Promise<readonly Row[]> {
    return this.step(index, async (step) => {
      if (step.sql === undefined) throw new Error(`${this.plan.action}: step ${index} has no SQL`);
      this.sent.push(step.sql);
      const rows = await session.query({ text: step.sql });
      return { value: rows, message: typeof message === 'string' ? message : message(rows) };
    });
  }

  /** Opens the action's own session (not a step: it runs no SQL of the plan). */
  openSession(): Promise<DbSession> {
    return DbSession.open(this.context.connection, actionApplicationName);
  }

  /** Notes a statement sent outside sql() (on the node, or by a poller). */
  record(sql: string): void {
    this.sent.push(sql);
  }

  /** Reports progress of the running step. */
  progress(fraction: number | null, phase: string, message: string): void {
    this.emit({ kind: 'progress', fraction, phase, message });
  }

  /** Ends the execution: one audit line, then the done event. */
  async finish(status: ActionOutcome['status'], summary: string, sqlstate: string | null = null): Promise<ActionOutcome> {
    let text = summary;
    try {
      // A refusal at execution ran nothing: record what it would have run.
      await recordAction(this.context, this.plan, status, summary, status === 'refused' ? planSql(this.plan) : this.sent);
    } catch (error) {
      text = `${summary} (${auditFailure(this.context.audit.path, error)})`;
    }
    const outcome: ActionOutcome = {
      planId: this.plan.id,
      action: this.plan.action,
      status,
      ok: status === 'ok',
      summary: text,
      sql: [...this.sent],
      sqlstate,
      startedAt: this.startedAt,
      finishedAt: this.now(),
    };
    this.emit({ kind: 'done', ok: outcome.ok, summary: text });
    return outcome;
  }
}

/**
 * Executes a plan: refuses a refused plan, read-only mode or an unwritable audit log; re-checks the
 * target on the live server; then runs `body`, which returns the summary or throws.
 */
export async function execute<A extends ActionId>(
  plan: Plan<A>,
  context: ActionContext,
  onEvent: ActionListener,
  recheck: () => Promise<string | null>,
  body: (execution: Execution<A>) => Promise<string>,
): Promise<ActionOutcome> {
  const execution = new Execution(plan, context, onEvent);
  if (plan.refused !== null) {
    // Already audited when it was planned; nothing to run.
    const now = execution.now();
    execution.emit({ kind: 'done', ok: false, summary: plan.refused });
    return { planId: plan.id, action: plan.action, status: 'refused', ok: false, summary: plan.refused, sql: [], sqlstate: null, startedAt: now, finishedAt: now };
  }
  if (context.readOnly) return execution.finish('refused', readOnlyRefusal);
  try {
    // Never act without leaving a trace.
    await context.audit.ensureWritable();
  } catch (error) {
    const summary = `refused: ${auditFailure(context.audit.path, error)}`;
    const now = execution.now();
    execution.emit({ kind: 'done', ok: false, summary });
    return { planId: plan.id, action: plan.action, status: 'refused', ok: false, summary, sql: [], sqlstate: null, startedAt: now, finishedAt: now };
  }
  let refusal: string | null;
  try {
    refusal = await recheck();
  } catch (error) {
    return execution.finish('failed', `could not re-check the target: ${messageOf(error)}`, sqlstateOf(error));
  }
  if (refusal !== null) return execution.finish('refused', refusal);
  try {
    const summary = await body(execution);
    return await execution.finish('ok', summary);
  } catch (error) {
    return execution.finish('failed', messageOf(error), sqlstateOf(error));
  }
}

/** The SQLSTATE of a database error, else null. */
export function sqlstateOf(error: unknown): string | null {
  // Follow the causes: a StepFailed may wrap the DbError that explains it.
  let cause: unknown = error;
  for (let depth = 0; depth < 10 && cause instanceof Error; depth += 1, cause = cause.cause) {
    if (cause instanceof DbError && cause.sqlstate !== undefined) return cause.sqlstate;
  }
  return null;
}

/** Polls `check` until it returns true or the time runs out; true when it did. */
export async function pollUntil(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}
