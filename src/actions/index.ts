/**
 * The action services (no React): each plans first (the exact SQL, the target, the danger and what
 * to type to confirm), then executes the plan with progress events and one audit line.
 */
import { analyzeTable } from './analyze-table.js';
import { cancelBackend } from './cancel-backend.js';
import { reindexInvalidIndex } from './reindex-invalid-index.js';
import { setRoleTimeouts } from './set-role-timeouts.js';
import { terminateBackend } from './terminate-backend.js';
import { terminateBackends } from './terminate-backends.js';
import type { Action, ActionContext, ActionId, ActionInputs, ActionListener, ActionOutcome, Plan } from './types.js';
import { vacuumTable } from './vacuum-table.js';

export type {
  Action,
  ActionBasis,
  ActionContext,
  ActionEvent,
  ActionId,
  ActionInputs,
  ActionListener,
  ActionOutcome,
  Danger,
  Plan,
  PlanStep,
  SessionIdentity,
} from './types.js';
export { AuditLog, defaultAuditPath, recordCancelled } from './audit.js';
export type { AuditEntry, AuditLogOptions, AuditOutcome } from './audit.js';
export { actionApplicationName, readOnlyRefusal } from './execution.js';
export { quoteIdent, quoteLiteral, qualifiedName } from './sql.js';
export { analyzeTable, cancelBackend, reindexInvalidIndex, terminateBackend, terminateBackends, vacuumTable };
export { setRoleTimeouts };
export { alterRoleSql, fixSql, proposedTimeouts } from './set-role-timeouts.js';

/** Every action, keyed by the keymap command that starts it. */
export const actions: { readonly [A in ActionId]: Action<A> } = {
  'session.cancel': cancelBackend,
  'session.terminate': terminateBackend,
  'session.terminateTagged': terminateBackends,
  'table.vacuum': vacuumTable,
  'table.analyze': analyzeTable,
  'index.reindex': reindexInvalidIndex,
  'role.setTimeouts': setRoleTimeouts,
};

/** The action ids, in keymap order. */
export const actionIds: readonly ActionId[] = Object.keys(actions) as ActionId[];

/** True when a keymap command id is an action. */
export function isActionId(id: string): id is ActionId {
  return Object.hasOwn(actions, id);
}

/** Plans the action `id` for `input`. */
export function planAction<A extends ActionId>(id: A, input: ActionInputs[A], context: ActionContext): Promise<Plan<A>> {
  const action: Action<A> = actions[id];
  return action.plan(input, context);
}

/** Executes a plan with the action that made it. */
export function executePlan<A extends ActionId>(plan: Plan<A>, context: ActionContext, onEvent: ActionListener): Promise<ActionOutcome> {
  const action: Action<A> = actions[plan.action];
  return action.execute(plan, context, onEvent);
}
