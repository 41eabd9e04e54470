/**
 * What the console shell needs from the world, behind one interface: results of the runner, the
 * targets to switch between, on-demand lookups and actions. console.tsx builds the real one over
 * PostgreSQL; nothing here imports React.
 */
import type { Results } from '../probes/runner.js';
import type { Selection } from '../screens/types.js';

export interface TargetChoice {
  readonly cluster: string;
  readonly node: string;
  /** Password-free connection label. */
  readonly label: string;
}

/** An action's plan as the console shows it (src/actions produces these). */
export interface PlanView {
  readonly id: string;
  readonly title: string;
  readonly target: string;
  readonly danger: 'low' | 'medium' | 'high';
  readonly steps: readonly { readonly description: string; readonly sql?: string | undefined; readonly command?: string | undefined }[];
  readonly confirmToken: string | null;
  readonly refused: string | null;
}

export interface StepStatus {
  readonly description: string;
  readonly status: 'pending' | 'running' | 'done' | 'failed';
  readonly message: string | null;
}

/** Progress of a running (or finished) action. */
export interface ActionProgress {
  readonly steps: readonly StepStatus[];
  /** 0..1, or null when unknown. */
  readonly fraction: number | null;
  readonly message: string | null;
  readonly finished: boolean;
  readonly ok: boolean | null;
}

export interface Monitor {
  /** Every configured cluster/node; the index pair selects one. */
  readonly choices: readonly (readonly TargetChoice[])[];
  readonly readOnly: boolean;
  /** Results of the current target, now. */
  results(): Results;
  /** Called once per refresh with every result. Returns the unsubscribe function. */
  subscribe(listener: (results: Results) => void): () => void;
  setPaused(paused: boolean): void;
  /** Switches the runner to another node. */
  select(cluster: number, node: number): void;
  /** The full query text of a session (the snapshot keeps a prefix), or null when it has gone. */
  fullQuery(pid: number): Promise<string | null>;
  /** Plans an action on a selection (never throws: a refusal is a plan with `refused`). */
  plan(command: string, selection: Selection, tagged: readonly number[]): Promise<PlanView>;
  /** Runs a confirmed plan, reporting progress; resolves when it ends. */
  execute(planId: string, onProgress: (progress: ActionProgress) => void): Promise<void>;
  /** Records that the user declined a plan (audit log). */
  decline(planId: string): void;
  /** Stops the runner and closes every connection. */
  close(): Promise<void>;
}
