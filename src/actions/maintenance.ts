/**
 * What VACUUM, ANALYZE and REINDEX share: their own session without the probes' statement timeout,
 * a deliberate lock timeout, a re-check that the relation is still the one planned, and progress
 * read from the server while the statement runs.
 */
import { formatDuration } from '../format/units.js';
import { execute, makePlan, readOnlyRefusal } from './execution.js';
import type { ProgressKind } from './progress.js';
import { withProgress } from './progress.js';
import { lookupTable, tableRefusal } from './relations.js';
import { displayName } from './sql.js';
import type { ActionBasis, ActionContext, ActionListener, ActionOutcome, Danger, Plan, PlanStep } from './types.js';

/** How long VACUUM and ANALYZE wait for their table lock before giving up. */
export const actionLockTimeout = '5s';

/** The session settings every maintenance action starts with. */
export function timeoutSteps(verb: string, lockTimeout: string | null): PlanStep[] {
  const statement: PlanStep = {
    description: `On a session of its own (application_name pgwarden-action): no statement timeout, so ${verb} runs as long as it needs (the probes' timeout does not apply).`,
    sql: 'SET statement_timeout = 0',
  };
  const lock: PlanStep =
    lockTimeout === null
      ? {
          description: `No lock timeout: ${verb} waits for older transactions to finish, and giving up midway would leave a second invalid index behind.`,
          sql: 'SET lock_timeout = 0',
        }
      : {
          description: `Give up if the table's lock is not granted within ${lockTimeout} (another session holds a conflicting lock, such as ACCESS EXCLUSIVE), rather than wait in the lock queue indefinitely.`,
          sql: `SET lock_timeout = '${lockTimeout}'`,
        };
  return [statement, lock];
}

type TableActionId = 'table.vacuum' | 'table.analyze';

/** The parts of a table action that differ between VACUUM and ANALYZE. */
export interface TableActionSpec {
  readonly verb: 'VACUUM' | 'ANALYZE';
  readonly title: string;
  readonly danger: Danger;
  readonly progress: ProgressKind;
  readonly steps: (schema: string, table: string) => PlanStep[];
}

/** Plans VACUUM or ANALYZE of a table: it must exist, be a table, and be the role's to maintain. */
export async function planTableAction<A extends TableActionId>(
  action: A,
  spec: TableActionSpec,
  input: Plan<A>['input'],
  context: ActionContext,
): Promise<Plan<A>> {
  const target = displayName(input.schema, input.table);
  const common = { title: `${spec.title} ${target}`, target, danger: spec.danger, confirmToken: null, steps: spec.steps(input.schema, input.table) };
  const basisOf = (oid: number | null): ActionBasis[A] => (oid === null ? null : { oid });
  if (context.readOnly) return makePlan(action, input, context, { ...common, refused: readOnlyRefusal, basis: basisOf(null) });
  const facts = await lookupTable(context, input.schema, input.table);
  const refused = tableRefusal(spec.verb, input.schema, input.table, facts, context.connection.user);
  return makePlan(action, input, context, { ...common, refused, basis: basisOf(facts?.oid ?? null) });
}

/** Runs a planned VACUUM or ANALYZE: timeouts, then the statement with progress events. */
export function executeTableAction<A extends TableActionId>(spec: TableActionSpec, plan: Plan<A>, context: ActionContext, onEvent: ActionListener): Promise<ActionOutcome> {
  const { schema, table } = plan.input;
  const recheck = async (): Promise<string | null> => {
    const facts = await lookupTable(context, schema, table);
    const refusal = tableRefusal(spec.verb, schema, table, facts, context.connection.user);
    if (refusal !== null) return refusal;
    if (plan.basis !== null && facts !== undefined && facts.oid !== plan.basis.oid) return `${displayName(schema, table)} was dropped and created again since it was planned: plan again`;
    return null;
  };
  return execute(plan, context, onEvent, recheck, async (run) => {
    const session = await run.openSession();
    const started = Date.now();
    try {
      await run.sql(0, session, 'statement_timeout is 0');
      await run.sql(1, session, 'lock_timeout set');
      await run.step(2, async (step) => {
        const sql = step.sql;
        if (sql === undefined) throw new Error(`${plan.action}: step 2 has no SQL`);
        run.record(sql);
        await withProgress(run, spec.progress, session.pid, () => session.query({ text: sql }));
        return { value: undefined, message: `done in ${formatDuration((Date.now() - started) / 1000)}` };
      });
    } finally {
      await session.close();
    }
    return `${plan.title} finished in ${formatDuration((Date.now() - started) / 1000)}`;
  });
}
