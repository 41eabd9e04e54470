/**
 * VACUUM (ANALYZE) one table, with live progress: medium danger (it adds I/O and holds a SHARE
 * UPDATE EXCLUSIVE lock, which blocks DDL but not reads or writes). VACUUM FULL is not offered:
 * it rewrites the table under an ACCESS EXCLUSIVE lock, which is an outage, not a repair.
 */
import { actionLockTimeout, executeTableAction, planTableAction, timeoutSteps } from './maintenance.js';
import type { TableActionSpec } from './maintenance.js';
import { progressIntervalMs } from './progress.js';
import { displayName, qualifiedName } from './sql.js';
import type { Action, PlanStep } from './types.js';

/** The steps of VACUUM (ANALYZE) on schema.table. */
export function vacuumSteps(schema: string, table: string): PlanStep[] {
  return [
    ...timeoutSteps('VACUUM', actionLockTimeout),
    {
      description: `Vacuum ${displayName(schema, table)} (dead rows become reusable space), then analyze it; progress from pg_stat_progress_vacuum every ${progressIntervalMs} ms.`,
      sql: `VACUUM (ANALYZE) ${qualifiedName(schema, table)}`,
    },
  ];
}

const spec: TableActionSpec = { verb: 'VACUUM', title: 'VACUUM (ANALYZE)', danger: 'medium', progress: 'vacuum', steps: vacuumSteps };

/** VACUUM (ANALYZE) of one table. */
export const vacuumTable: Action<'table.vacuum'> = {
  id: 'table.vacuum',
  plan: (input, context) => planTableAction('table.vacuum', spec, input, context),
  execute: (plan, context, onEvent) => executeTableAction(spec, plan, context, onEvent),
};
