/** Cancel one backend's running query (pg_cancel_backend): low danger, the session stays connected. */
import { execute, makePlan, readOnlyRefusal, StepFailed } from './execution.js';
import { describeSession, lookupSessions, recheckSession, sessionRefusal } from './sessions.js';
import { isPid, pidLiteral } from './sql.js';
import type { Action, Plan, PlanStep } from './types.js';

/** The steps of a cancel: one statement. */
export function cancelSteps(pid: number, state: string | null = null): PlanStep[] {
  // Cancelling an idle session does nothing: say so before the user relies on it to free a lock.
  const idle = state !== null && state.startsWith('idle');
  const note = idle ? ` It is ${state}, with no query to cancel: this will not end its transaction nor release its locks (terminate does).` : '';
  return [{ description: `Cancel the query running in pid ${pid}: it fails with query_canceled (57014); the session stays connected.${note}`, sql: `SELECT pg_cancel_backend(${pidLiteral(pid)})` }];
}

/** Cancels the query of one backend. */
export const cancelBackend: Action<'session.cancel'> = {
  id: 'session.cancel',

  async plan(input, context): Promise<Plan<'session.cancel'>> {
    const common = { title: `Cancel the query of pid ${input.pid}`, danger: 'low' as const, confirmToken: null, basis: null };
    if (!isPid(input.pid)) return makePlan('session.cancel', input, context, { ...common, target: `pid ${String(input.pid)}`, steps: [], refused: `not a process id: ${String(input.pid)}` });
    if (context.readOnly) return makePlan('session.cancel', input, context, { ...common, target: `pid ${input.pid}`, steps: cancelSteps(input.pid), refused: readOnlyRefusal });
    const facts = (await lookupSessions(context, [input.pid])).get(input.pid);
    const refused = sessionRefusal(input.pid, facts, context.connection.user);
    return makePlan('session.cancel', input, context, {
      ...common,
      target: describeSession(input.pid, facts),
      steps: cancelSteps(input.pid, facts?.state ?? null),
      refused,
      basis: facts === undefined ? null : { pid: facts.pid, startedUs: facts.startedUs },
    });
  },

  execute(plan, context, onEvent) {
    return execute(plan, context, onEvent, () => recheckSession(plan, context), async (run) => {
      const session = await run.openSession();
      try {
        const rows = await run.sql(0, session, (result) => `pg_cancel_backend(${plan.input.pid}) returned ${String(result[0]?.['pg_cancel_backend'] === true)}`);
        if (rows[0]?.['pg_cancel_backend'] !== true) throw new StepFailed(`pg_cancel_backend(${plan.input.pid}) returned false: the signal could not be sent (the session may have just ended)`);
        return `pg_cancel_backend(${plan.input.pid}) returned true: the query of ${plan.target} was cancelled; the session stays connected`;
      } finally {
        await session.close();
      }
    });
  },
};
