/**
 * Between the console and src/actions: turns a selection into an action's input, keeps the plans
 * the user is looking at, and turns action events into the progress the dialog shows.
 */
import type { ConnectionSpec } from '../config/types.js';
import type { PgNode } from '../db/node.js';
import { messageOf } from '../errors.js';
import { commands } from '../keymap.js';
import { AuditLog, executePlan, isActionId, planAction, recordCancelled, type ActionContext, type ActionId, type ActionInputs, type Plan } from '../actions/index.js';
import { roleFromSubject } from '../checks/timeouts.js';
import type { Selection } from '../screens/types.js';
import type { ActionProgress, PlanView, StepStatus } from './monitor.js';

export interface ActionDeskOptions {
  readonly node: PgNode;
  readonly connection: ConnectionSpec;
  readonly readOnly: boolean;
  readonly auditPath?: string | undefined;
  /** The cluster the node belongs to: an alert of another cluster never picks a role to alter here. */
  readonly cluster?: string | undefined;
}

let localPlans = 0;

/** A plan that cannot even be made (nothing selected…), shown like a refused one. */
function refusedView(title: string, reason: string): PlanView {
  localPlans += 1;
  return { id: `local-${localPlans}`, title, target: '-', danger: 'low', steps: [], confirmToken: null, refused: reason };
}

/** A session's role, or the role a timeouts alert of this cluster names (role settings are cluster-wide). */
function roleInput(selection: Selection, cluster: string | undefined): ActionInputs['role.setTimeouts'] | undefined {
  if (selection.kind === 'session') return { pid: selection.pid };
  const target = selection.kind === 'alert' ? selection.target : null;
  const role = target?.checkId === 'timeouts' && target.cluster === cluster ? roleFromSubject(target.subject) : undefined;
  return role === undefined ? undefined : { role };
}

function inputFor(action: ActionId, selection: Selection, tagged: readonly number[], cluster?: string): ActionInputs[ActionId] | undefined {
  switch (action) {
    case 'session.cancel':
    case 'session.terminate':
      return selection.kind === 'session' ? { pid: selection.pid } : undefined;
    case 'session.terminateTagged':
      return tagged.length > 0 ? { pids: tagged } : undefined;
    case 'table.vacuum':
      return selection.kind === 'table' ? { schema: selection.schema, table: selection.name, analyze: true } : undefined;
    case 'table.analyze':
      return selection.kind === 'table' ? { schema: selection.schema, table: selection.name } : undefined;
    case 'index.reindex':
      return selection.kind === 'index' ? { schema: selection.schema, index: selection.name } : undefined;
    case 'role.setTimeouts':
      return roleInput(selection, cluster);
  }
}

export class ActionDesk {
  private readonly plans = new Map<string, Plan>();
  private readonly context: ActionContext;
  private readonly cluster: string | undefined;

  constructor(options: ActionDeskOptions) {
    this.cluster = options.cluster;
    this.context = {
      node: options.node,
      connection: options.connection,
      readOnly: options.readOnly,
      audit: new AuditLog(options.auditPath === undefined ? {} : { path: options.auditPath }),
    };
  }

  /** The plan for a command on the current selection; refusals are plans too. */
  async plan(command: string, selection: Selection, tagged: readonly number[]): Promise<PlanView> {
    const described = commands.find((c) => c.id === command);
    const title = described?.description ?? command;
    if (!isActionId(command)) return refusedView(title, `${command} is not an action`);
    const input = inputFor(command, selection, tagged, this.cluster);
    if (input === undefined) return refusedView(title, `this ${described?.whyDisabled ?? 'needs a selection'}`);
    try {
      const plan = await planAction(command, input as never, this.context);
      this.plans.set(plan.id, plan);
      return plan;
    } catch (error) {
      return refusedView(title, messageOf(error));
    }
  }

  /** Runs a plan the user confirmed, reporting progress until it ends. */
  async execute(planId: string, onProgress: (progress: ActionProgress) => void): Promise<void> {
    const plan = this.plans.get(planId);
    if (plan === undefined) {
      onProgress({ steps: [], fraction: null, message: 'this plan is no longer known', finished: true, ok: false });
      return;
    }
    let steps: StepStatus[] = plan.steps.map((step) => ({ description: step.description, status: 'pending', message: null }));
    let fraction: number | null = null;
    let message: string | null = null;
    await executePlan(plan, this.context, (event) => {
      if (event.kind === 'step') {
        const status = event.status === 'started' ? 'running' : event.status === 'finished' ? 'done' : 'failed';
        steps = steps.map((step, index) => (index === event.index ? { ...step, status, message: event.message } : step));
        onProgress({ steps, fraction, message, finished: false, ok: null });
      } else if (event.kind === 'progress') {
        fraction = event.fraction;
        message = event.message;
        onProgress({ steps, fraction, message, finished: false, ok: null });
      } else {
        onProgress({ steps, fraction: event.ok ? 1 : fraction, message: event.summary, finished: true, ok: event.ok });
      }
    });
    this.plans.delete(planId);
  }

  /** The user said no: audited, and forgotten. */
  decline(planId: string): void {
    const plan = this.plans.get(planId);
    if (plan === undefined) return;
    this.plans.delete(planId);
    void recordCancelled(plan, this.context);
  }
}
