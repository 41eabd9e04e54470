/**
 * REINDEX INDEX CONCURRENTLY of an invalid index (the leftover of a failed CREATE INDEX
 * CONCURRENTLY): high danger, confirmed by typing the index name. It builds a new copy without
 * blocking writes, swaps it in and drops the old one.
 */
import type { Row } from '../db/types.js';
import { formatDuration } from '../format/units.js';
import { execute, makePlan, readOnlyRefusal, StepFailed } from './execution.js';
import { timeoutSteps } from './maintenance.js';
import { progressIntervalMs, withProgress } from './progress.js';
import { indexRefusal, lookupIndex } from './relations.js';
import type { IndexFacts } from './relations.js';
import { displayName, qualifiedName, quoteLiteral } from './sql.js';
import type { Action, ActionContext, Plan, PlanStep } from './types.js';

/** The statement that tells whether the index is valid afterwards (by name: the rebuilt index has a new oid). */
export function validitySql(schema: string, index: string): string {
  return `SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${quoteLiteral(schema)} AND c.relname = ${quoteLiteral(index)}`;
}

/** The steps of REINDEX CONCURRENTLY of schema.index. */
export function reindexSteps(schema: string, index: string, unique = false): PlanStep[] {
  const duplicates = unique ? ' It is unique: it fails again if duplicate keys remain (remove them first), leaving an invalid copy named …_ccnew to drop.' : '';
  return [
    ...timeoutSteps('REINDEX CONCURRENTLY', null),
    {
      description: `Build a new copy of ${displayName(schema, index)} without blocking reads or writes, swap it in and drop the invalid one; progress from pg_stat_progress_create_index every ${progressIntervalMs} ms.${duplicates}`,
      sql: `REINDEX INDEX CONCURRENTLY ${qualifiedName(schema, index)}`,
    },
    { description: `Check that ${displayName(schema, index)} is now valid.`, sql: validitySql(schema, index) },
  ];
}

function describeIndex(schema: string, index: string, facts: IndexFacts | undefined): string {
  const name = displayName(schema, index);
  if (facts === undefined) return name;
  return `${name} (${facts.unique ? 'unique, ' : ''}on ${displayName(facts.schema, facts.table)})`;
}

async function versionOf(context: ActionContext): Promise<number> {
  return (await context.node.serverInfo()).versionNum;
}

// A failed REINDEX CONCURRENTLY leaves its half-built copy behind, invalid: name it, with the fix.
async function leftovers(context: ActionContext, schema: string, index: string): Promise<string> {
  const rows: readonly Row[] = await context.node
    .query({
      text: `select c.relname from pg_index x join pg_class c on c.oid = x.indexrelid
              where not x.indisvalid and c.relname ~ '_ccnew[0-9]*$'
                and x.indrelid = (select o.indrelid from pg_index o join pg_class oc on oc.oid = o.indexrelid
                                   join pg_namespace n on n.oid = oc.relnamespace where n.nspname = $1 and oc.relname = $2)`,
      values: [schema, index],
    })
    .catch(() => []);
  const names = rows.map((row) => String(row['relname']));
  if (names.length === 0) return '';
  return `; it left ${names.map((name) => displayName(schema, name)).join(', ')} behind, invalid: drop ${names.length === 1 ? 'it' : 'them'} with ${names.map((name) => `DROP INDEX CONCURRENTLY ${qualifiedName(schema, name)}`).join('; ')}`;
}

/** REINDEX INDEX CONCURRENTLY of one invalid index. */
export const reindexInvalidIndex: Action<'index.reindex'> = {
  id: 'index.reindex',

  async plan(input, context): Promise<Plan<'index.reindex'>> {
    const common = { title: `REINDEX INDEX CONCURRENTLY ${displayName(input.schema, input.index)}`, danger: 'high' as const, confirmToken: input.index };
    if (context.readOnly) {
      return makePlan('index.reindex', input, context, { ...common, target: displayName(input.schema, input.index), steps: reindexSteps(input.schema, input.index), refused: readOnlyRefusal, basis: null });
    }
    const [facts, version] = await Promise.all([lookupIndex(context, input.schema, input.index), versionOf(context)]);
    return makePlan('index.reindex', input, context, {
      ...common,
      target: describeIndex(input.schema, input.index, facts),
      steps: reindexSteps(input.schema, input.index, facts?.unique ?? false),
      refused: indexRefusal(input.schema, input.index, facts, context.connection.user, version),
      basis: facts === undefined ? null : { oid: facts.oid },
    });
  },

  execute(plan, context, onEvent) {
    const { schema, index } = plan.input;
    const recheck = async (): Promise<string | null> => {
      const [facts, version] = await Promise.all([lookupIndex(context, schema, index), versionOf(context)]);
      const refusal = indexRefusal(schema, index, facts, context.connection.user, version);
      if (refusal !== null) return refusal;
      if (plan.basis !== null && facts !== undefined && facts.oid !== plan.basis.oid) return `${displayName(schema, index)} was dropped and created again since it was planned: plan again`;
      return null;
    };
    return execute(plan, context, onEvent, recheck, async (run) => {
      const session = await run.openSession();
      const started = Date.now();
      try {
        await run.sql(0, session, 'statement_timeout is 0');
        await run.sql(1, session, 'lock_timeout is 0');
        try {
          await run.step(2, async (step) => {
            const sql = step.sql;
            if (sql === undefined) throw new Error('index.reindex: step 2 has no SQL');
            run.record(sql);
            await withProgress(run, 'index', session.pid, () => session.query({ text: sql }));
            return { value: undefined, message: `rebuilt in ${formatDuration((Date.now() - started) / 1000)}` };
          });
        } catch (error) {
          const left = await leftovers(context, schema, index);
          if (left === '') throw error;
          throw new StepFailed(`${error instanceof Error ? error.message : String(error)}${left}`, { cause: error });
        }
        const rows = await run.sql(3, session, (result) => (result[0]?.['indisvalid'] === true ? 'valid' : 'still not valid'));
        if (rows[0]?.['indisvalid'] !== true) throw new StepFailed(`REINDEX finished but ${displayName(schema, index)} is still not valid`);
      } finally {
        await session.close();
      }
      return `${displayName(schema, index)} was rebuilt and is valid (${formatDuration((Date.now() - started) / 1000)})`;
    });
  },
};
