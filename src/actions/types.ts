/**
 * The action contract: every action first returns a Plan (the exact SQL it will run, in order, who
 * it targets, how dangerous it is and what the user must type to confirm), then executes that plan
 * with progress events. No React here; the console and any other front end drive these services.
 */
import type { ConnectionSpec } from '../config/types.js';
import type { PgNode } from '../db/node.js';
import type { CommandId } from '../keymap.js';
import type { AuditLog } from './audit.js';

/** The actions, keyed by the same ids as the keymap commands that start them. */
export type ActionId = Extract<
  CommandId,
  'session.cancel' | 'session.terminate' | 'session.terminateTagged' | 'table.vacuum' | 'table.analyze' | 'index.reindex'
  | 'role.setTimeouts'
>;

/** low and medium are confirmed with y/n (medium in the warning colour); high by typing confirmToken. */
export type Danger = 'low' | 'medium' | 'high';

/** What each action is asked to act on. */
export interface ActionInputs {
  readonly 'session.cancel': { readonly pid: number };
  readonly 'session.terminate': { readonly pid: number };
  readonly 'session.terminateTagged': { readonly pids: readonly number[] };
  /** VACUUM FULL is deliberately not offered: it rewrites the table under an ACCESS EXCLUSIVE lock. */
  readonly 'table.vacuum': { readonly schema: string; readonly table: string; readonly analyze: true };
  readonly 'table.analyze': { readonly schema: string; readonly table: string };
  readonly 'index.reindex': { readonly schema: string; readonly index: string };
  /** A role by name (an alert's subject), or the role of a session (an Activity row). */
  readonly 'role.setTimeouts': { readonly role: string } | { readonly pid: number };
}

/** A session as it was when planned: a pid with another backend_start is another session. */
export interface SessionIdentity {
  readonly pid: number;
  /** backend_start in microseconds since the epoch, as text (exact). */
  readonly startedUs: string;
}

/** What plan() saw on the server, so execute() can tell whether its target is still the same. */
export interface ActionBasis {
  readonly 'session.cancel': SessionIdentity | null;
  readonly 'session.terminate': SessionIdentity | null;
  readonly 'session.terminateTagged': readonly SessionIdentity[];
  readonly 'table.vacuum': { readonly oid: number } | null;
  readonly 'table.analyze': { readonly oid: number } | null;
  readonly 'index.reindex': { readonly oid: number } | null;
  /** The role resolved at planning (a pid's role is looked up then). */
  readonly 'role.setTimeouts': { readonly oid: number; readonly role: string } | null;
}

/** One thing the plan does, in order; sql and command are exactly what will run. */
export interface PlanStep {
  readonly description: string;
  readonly sql?: string;
  readonly command?: string;
}

/** What an action will do, shown before the user confirms. */
export interface Plan<A extends ActionId = ActionId> {
  /** Unique per plan. */
  readonly id: string;
  readonly action: A;
  readonly title: string;
  /** Human readable, e.g. "pid 4242 (alice@app, psql)". */
  readonly target: string;
  readonly danger: Danger;
  readonly steps: readonly PlanStep[];
  /** What the user must type to confirm (high danger), e.g. the index name or the session count; null means y/n. */
  readonly confirmToken: string | null;
  /** Why this cannot run (nothing will be executed), or null. */
  readonly refused: string | null;
  readonly input: ActionInputs[A];
  readonly basis: ActionBasis[A];
  readonly createdAt: Date;
}

/** Progress of an execution, in order; exactly one `done` comes last. */
export type ActionEvent =
  | { readonly kind: 'step'; readonly status: 'started' | 'finished' | 'failed'; readonly index: number; readonly message: string }
  /** fraction is 0..1, or null while the total is unknown; phase as the server names it. */
  | { readonly kind: 'progress'; readonly fraction: number | null; readonly phase: string; readonly message: string }
  | { readonly kind: 'done'; readonly ok: boolean; readonly summary: string };

/** Receives the events of one execution; it must not throw (a throwing listener is ignored). */
export type ActionListener = (event: ActionEvent) => void;

/** How an execution ended. `refused`: the re-check found the target gone or changed, nothing ran. */
export interface ActionOutcome {
  readonly planId: string;
  readonly action: ActionId;
  readonly status: 'ok' | 'failed' | 'refused';
  readonly ok: boolean;
  readonly summary: string;
  /** The statements that were sent, in order (the last one may have failed). */
  readonly sql: readonly string[];
  /** The SQLSTATE of the failure, when the server reported one. */
  readonly sqlstate: string | null;
  readonly startedAt: Date;
  readonly finishedAt: Date;
}

/** What actions run against. node and connection must point at the same server and database. */
export interface ActionContext {
  /** For reads: validation, progress polling, waiting for a terminated session to go. */
  readonly node: PgNode;
  /** For the work: each execution opens its own DbSession (application_name pgwarden-action). */
  readonly connection: ConnectionSpec;
  readonly readOnly: boolean;
  readonly audit: AuditLog;
  readonly now?: () => Date;
  /** Backend pids of this process's other connections (they carry pgwarden's name too, unless renamed). */
  readonly ownPids?: () => readonly number[];
}

/** One action service: plan validates against the live server; execute re-checks, then runs the plan. */
export interface Action<A extends ActionId> {
  readonly id: A;
  plan(input: ActionInputs[A], context: ActionContext): Promise<Plan<A>>;
  execute(plan: Plan<A>, context: ActionContext, onEvent: ActionListener): Promise<ActionOutcome>;
}
