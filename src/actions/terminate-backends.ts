/**
 * Terminate several tagged backends: high danger, confirmed by typing how many. Sessions that
 * ended before planning are left out (and said so); one that is pgwarden's own, or that the role
 * may not signal, refuses the whole plan, since the user tagged something they should not have.
 */
import { execute, makePlan, readOnlyRefusal, StepFailed } from './execution.js';
import { describeSession, identityRefusal, lookupSessions, sessionRefusal } from './sessions.js';
import { isPid } from './sql.js';
import { remainingSql, terminateStep, terminateWaitMs, waitGone, waitStep } from './terminate-backend.js';
import type { Action, Plan, PlanStep } from './types.js';

/** One terminate step per pid, then one wait for all of them. */
export function terminateManySteps(pids: readonly number[], targets: ReadonlyMap<number, string> = new Map()): PlanStep[] {
  return [...pids.map((pid) => terminateStep(pid, targets.get(pid))), waitStep(pids)];
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Terminates every tagged backend, then waits until all are gone. */
export const terminateBackends: Action<'session.terminateTagged'> = {
  id: 'session.terminateTagged',

  async plan(input, context): Promise<Plan<'session.terminateTagged'>> {
    const pids = [...new Set(input.pids)];
    const common = { title: `Terminate ${plural(pids.length, 'session', 'sessions')}`, danger: 'high' as const, basis: [] };
    const bad = pids.find((pid) => !isPid(pid));
    if (pids.length === 0 || bad !== undefined) {
      const refused = bad === undefined ? 'no sessions are tagged' : `not a process id: ${String(bad)}`;
      return makePlan('session.terminateTagged', input, context, { ...common, target: 'no sessions', steps: [], confirmToken: null, refused });
    }
    if (context.readOnly) {
      return makePlan('session.terminateTagged', input, context, { ...common, target: `pids ${pids.join(', ')}`, steps: terminateManySteps(pids), confirmToken: String(pids.length), refused: readOnlyRefusal });
    }
    const found = await lookupSessions(context, pids);
    const live = pids.filter((pid) => found.has(pid));
    const ended = pids.filter((pid) => !found.has(pid));
    const refusals = live.map((pid) => sessionRefusal(pid, found.get(pid), context.connection.user)).filter((reason) => reason !== null);
    const targets = new Map(live.map((pid) => [pid, describeSession(pid, found.get(pid))]));
    const endedNote = ended.length === 0 ? '' : `; ${plural(ended.length, 'tagged session has', 'tagged sessions have')} already ended (pid ${ended.join(', ')})`;
    let refused: string | null = null;
    if (refusals.length > 0) refused = `${refusals.join('; ')}: untag it and try again`;
    else if (live.length === 0) refused = `every tagged session has already ended (pid ${ended.join(', ')})`;
    return makePlan('session.terminateTagged', input, context, {
      title: `Terminate ${plural(live.length, 'session', 'sessions')}`,
      target: `${plural(live.length, 'session', 'sessions')}: ${[...targets.values()].join(', ')}${endedNote}`,
      danger: 'high',
      steps: live.length === 0 ? [] : terminateManySteps(live, targets),
      // Typing the count proves the user knows how many sessions go, not just that they pressed a key.
      confirmToken: String(live.length),
      refused,
      basis: live.flatMap((pid) => {
        const facts = found.get(pid);
        return facts === undefined ? [] : [{ pid, startedUs: facts.startedUs }];
      }),
    });
  },

  execute(plan, context, onEvent) {
    const planned = plan.basis;
    return execute(plan, context, onEvent, () => Promise.resolve(planned.length === 0 ? 'no sessions to terminate' : null), async (run) => {
      const found = await lookupSessions(context, planned.map((identity) => identity.pid));
      const signalled: number[] = [];
      const problems: string[] = [];
      let already = 0;
      const session = await run.openSession();
      try {
        for (const [index, identity] of planned.entries()) {
          const facts = found.get(identity.pid);
          try {
            await run.step(index, async (step) => {
              // Ended meanwhile: the goal is met without sending anything.
              if (facts === undefined) {
                already += 1;
                return { value: undefined, message: `pid ${identity.pid} had already ended` };
              }
              const refusal = identityRefusal(identity, facts, context.connection.user);
              if (refusal !== null) throw new StepFailed(`${refusal}: not signalled`);
              if (step.sql === undefined) throw new Error(`step ${index} has no SQL`);
              run.record(step.sql);
              const rows = await session.query({ text: step.sql });
              if (rows[0]?.['pg_terminate_backend'] !== true) throw new StepFailed(`pg_terminate_backend(${identity.pid}) returned false`);
              signalled.push(identity.pid);
              return { value: undefined, message: `pg_terminate_backend(${identity.pid}) returned true` };
            });
          } catch (error) {
            problems.push(error instanceof Error ? error.message : String(error));
          }
        }
      } finally {
        await session.close();
      }
      await run.step(planned.length, async () => {
        if (signalled.length === 0) return { value: undefined, message: 'no session was signalled: nothing to wait for' };
        run.record(remainingSql(signalled));
        const left = await waitGone(context.node, signalled);
        if (left.length > 0) problems.push(`pid ${left.join(', ')} still there after ${terminateWaitMs / 1000} s`);
        return { value: undefined, message: left.length === 0 ? `${plural(signalled.length, 'session is', 'sessions are')} gone` : `still there: pid ${left.join(', ')}` };
      });
      const done = `terminated ${signalled.length} of ${planned.length}${already > 0 ? ` (${already} had already ended)` : ''}`;
      if (problems.length > 0) throw new StepFailed(`${done}; ${problems.join('; ')}`);
      return `${done}: ${plural(signalled.length + already, 'session is', 'sessions are')} gone`;
    });
  },
};
