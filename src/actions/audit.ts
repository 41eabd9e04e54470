/**
 * The local audit log of actions: append-only JSON lines, one per executed, refused or cancelled
 * action (time, OS user, host, node, action, target, SQL, outcome). It lives under the XDG state
 * directory with owner-only permissions, and never holds a password.
 */
import { appendFile, mkdir, open, readFile } from 'node:fs/promises';
import { homedir, hostname, userInfo } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { redact } from '../config/redact.js';
import { messageOf } from '../errors.js';
import type { ActionContext, ActionId, Plan } from './types.js';

/** How an audited action ended; `cancelled` means the user said no at the confirmation. */
export type AuditOutcome = 'ok' | 'failed' | 'refused' | 'cancelled';

/** One line of the audit log. */
export interface AuditEntry {
  /** ISO 8601, UTC. */
  readonly time: string;
  readonly os_user: string;
  readonly host: string;
  /** The node's label (user@host:port/database), never a password. */
  readonly target: string;
  readonly action: ActionId;
  readonly plan_id: string;
  /** What the plan acted on, e.g. "pid 4242 (alice@app, psql)". */
  readonly plan_target: string;
  /** Executed actions: the statements sent; refused or cancelled ones: the statements planned (none ran). */
  readonly sql: readonly string[];
  readonly outcome: AuditOutcome;
  readonly message: string;
}

export interface AuditLogOptions {
  /** Where to write; defaults to defaultAuditPath(). */
  readonly path?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly home?: string;
  /** Strings that must never be written (passwords); DSN passwords are redacted regardless. */
  readonly secrets?: readonly string[];
}

/** $XDG_STATE_HOME/pgwarden/audit.log, or ~/.local/state/pgwarden/audit.log. */
export function defaultAuditPath(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const state = env['XDG_STATE_HOME'];
  // The XDG spec says to ignore a relative value.
  const base = state !== undefined && state !== '' && isAbsolute(state) ? state : join(home, '.local', 'state');
  return join(base, 'pgwarden', 'audit.log');
}

function osUser(env: NodeJS.ProcessEnv): string {
  try {
    return userInfo().username;
  } catch {
    // A uid with no passwd entry (containers): fall back to what the shell says.
    return env['USER'] ?? env['LOGNAME'] ?? `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** The append-only audit log; writes are serialized so lines never interleave or reorder. */
export class AuditLog {
  readonly path: string;
  private readonly secrets: readonly string[];
  private readonly env: NodeJS.ProcessEnv;
  private queue: Promise<void> = Promise.resolve();

  constructor(options: AuditLogOptions = {}) {
    this.env = options.env ?? process.env;
    this.path = options.path ?? defaultAuditPath(this.env, options.home ?? homedir());
    this.secrets = options.secrets ?? [];
  }

  /** The OS user and host stamped on every entry. */
  who(): { readonly os_user: string; readonly host: string } {
    return { os_user: osUser(this.env), host: hostname() };
  }

  /** Creates the directory (0700) and the file (0600) if needed; throws when they cannot be written. */
  async ensureWritable(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const handle = await open(this.path, 'a', 0o600);
    await handle.close();
  }

  /** Appends one entry as a JSON line, with every secret redacted. */
  append(entry: AuditEntry, secrets: readonly string[] = []): Promise<void> {
    const all = [...this.secrets, ...secrets].filter((secret) => secret !== '');
    const clean = (text: string): string => redact(text, all);
    const safe: AuditEntry = {
      ...entry,
      os_user: clean(entry.os_user),
      host: clean(entry.host),
      target: clean(entry.target),
      plan_target: clean(entry.plan_target),
      sql: entry.sql.map(clean),
      message: clean(entry.message),
    };
    const line = `${JSON.stringify(safe)}\n`;
    const write = this.queue.then(async () => {
      await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
      await appendFile(this.path, line, { mode: 0o600 });
    });
    // A failed write must not stop the ones after it.
    this.queue = write.catch(() => undefined);
    return write;
  }

  /** Every entry written so far (for the console's history and for tests). */
  async read(): Promise<AuditEntry[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return text
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as AuditEntry);
  }
}

/** The statements of a plan, in order. */
export function planSql(plan: Plan): string[] {
  return plan.steps.flatMap((step) => (step.sql === undefined ? [] : [step.sql]));
}

/** Appends one entry about a plan, stamped with the time, the OS user and the node. */
export async function recordAction(
  context: ActionContext,
  plan: Plan,
  outcome: AuditOutcome,
  message: string,
  sql: readonly string[] = planSql(plan),
): Promise<void> {
  const now = context.now?.() ?? new Date();
  const secrets = context.connection.password === undefined ? [] : [context.connection.password];
  await context.audit.append(
    {
      time: now.toISOString(),
      ...context.audit.who(),
      target: context.node.label,
      action: plan.action,
      plan_id: plan.id,
      plan_target: plan.target,
      sql,
      outcome,
      message,
    },
    secrets,
  );
}

/** Records that the user declined the plan at the confirmation; nothing ran. */
export async function recordCancelled(plan: Plan, context: ActionContext): Promise<void> {
  await recordAction(context, plan, 'cancelled', 'cancelled at the confirmation; nothing was run');
}

/** The reason an audit write failed, for a message. */
export function auditFailure(path: string, error: unknown): string {
  return `the audit log ${path} could not be written: ${messageOf(error)}`;
}
