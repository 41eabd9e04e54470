/** Terminate one backend (pg_terminate_backend): medium danger, its transaction is rolled back and its connection closed. */
import type { Queryable } from '../db/types.js';
import { execute, makePlan, pollUntil, readOnlyRefusal, StepFailed } from './execution.js';
import { describeSession, lookupSessions, recheckSession, sessionRefusal } from './sessions.js';
import { isPid, pidLiteral } from './sql.js';
import type { Action, Plan, PlanStep } from './types.js';

/** How long execute() waits for a terminated backend to leave pg_stat_activity. */
export const terminateWaitMs = 10_000;

/** The statement that tells whether the pids are still there (run on the node while waiting). */
export function remainingSql(pids: readonly number[]): string {
  return pids.length === 1 ? `SELECT pid FROM pg_stat_activity WHERE pid = ${pidLiteral(pids[0] ?? 0)}` : `SELECT pid FROM pg_stat_activity WHERE pid IN (${pids.map(pidLiteral).join(', ')})`;
}

/** One terminate step per pid; the caller adds the wait. */
export function terminateStep(pid: number, target = `pid ${pid}`): PlanStep {
  return { description: `Terminate ${target}: its transaction is rolled back, its locks released and its connection closed.`, sql: `SELECT pg_terminate_backend(${pidLiteral(pid)})` };
}

/** The wait after terminating. */
export function waitStep(pids: readonly number[]): PlanStep {
  const which = pids.length === 1 ? `pid ${pids[0] ?? 0} has` : `pids ${pids.join(', ')} have`;
  return { description: `Wait until ${which} left pg_stat_activity (checked every 100 ms, for at most ${terminateWaitMs / 1000} s).`, sql: remainingSql(pids) };
}

/** Polls until none of the pids is left; returns the ones still there at the deadline. */
export async function waitGone(node: Queryable, pids: readonly number[], timeoutMs = terminateWaitMs): Promise<number[]> {
  let left: number[] = [...pids];
  if (left.length === 0) return left;
  const text = remainingSql(pids);
  await pollUntil(async () => {
    const rows = await node.query({ text });
    left = rows.map((row) => Number(row['pid']));
    return left.length === 0;
  }, timeoutMs);
  return left;
}

/** Terminates one backend and waits until it is gone. */
export const terminateBackend: Action<'session.terminate'> = {
  id: 'session.terminate',

  async plan(input, context): Promise<Plan<'session.terminate'>> {
    const common = { title: `Terminate pid ${input.pid}`, danger: 'medium' as const, confirmToken: null, basis: null };
    if (!isPid(input.pid)) return makePlan('session.terminate', input, context, { ...common, target: `pid ${String(input.pid)}`, steps: [], refused: `not a process id: ${String(input.pid)}` });
    const steps = [terminateStep(input.pid), waitStep([input.pid])];
    if (context.readOnly) return makePlan('session.terminate', input, context, { ...common, target: `pid ${input.pid}`, steps, refused: readOnlyRefusal });
    const facts = (await lookupSessions(context, [input.pid])).get(input.pid);
    return makePlan('session.terminate', input, context, {
      ...common,
      target: describeSession(input.pid, facts),
      steps,
      refused: sessionRefusal(input.pid, facts, context.connection.user),
      basis: facts === undefined ? null : { pid: facts.pid, startedUs: facts.startedUs },
    });
  },

  execute(plan, context, onEvent) {
    const pid = plan.input.pid;
    return execute(plan, context, onEvent, () => recheckSession(plan, context), async (run) => {
      const session = await run.openSession();
      try {
        const rows = await run.sql(0, session, (result) => `pg_terminate_backend(${pid}) returned ${String(result[0]?.['pg_terminate_backend'] === true)}`);
        if (rows[0]?.['pg_terminate_backend'] !== true) throw new StepFailed(`pg_terminate_backend(${pid}) returned false: the signal could not be sent (the session may have just ended)`);
      } finally {
        await session.close();
      }
      await run.step(1, async (step) => {
        if (step.sql !== undefined) run.record(step.sql);
        const left = await waitGone(context.node, [pid]);
        if (left.length > 0) throw new StepFailed(`pg_terminate_backend(${pid}) returned true, but pid ${pid} was still there after ${terminateWaitMs / 1000} s`);
        return { value: undefined, message: `pid ${pid} is gone` };
      });
      return `pg_terminate_backend(${pid}) returned true: ${plan.target} was terminated and is gone`;
    });
  },
};
