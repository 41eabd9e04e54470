/** ANALYZE one table: low danger (it reads a sample and updates the planner's statistics). */
import { actionLockTimeout, executeTableAction, planTableAction, timeoutSteps } from './maintenance.js';
import type { TableActionSpec } from './maintenance.js';
import { progressIntervalMs } from './progress.js';
import { displayName, qualifiedName } from './sql.js';
import type { Action, PlanStep } from './types.js';

/** The steps of ANALYZE on schema.table. */
export function analyzeSteps(schema: string, table: string): PlanStep[] {
  return [
    ...timeoutSteps('ANALYZE', actionLockTimeout),
    {
      description: `Sample ${displayName(schema, table)} and update the planner's statistics; progress from pg_stat_progress_analyze every ${progressIntervalMs} ms.`,
      sql: `ANALYZE ${qualifiedName(schema, table)}`,
    },
  ];
}

const spec: TableActionSpec = { verb: 'ANALYZE', title: 'ANALYZE', danger: 'low', progress: 'analyze', steps: analyzeSteps };

/** ANALYZE of one table. */
export const analyzeTable: Action<'table.analyze'> = {
  id: 'table.analyze',
  plan: (input, context) => planTableAction('table.analyze', spec, input, context),
  execute: (plan, context, onEvent) => executeTableAction(spec, plan, context, onEvent),
};
