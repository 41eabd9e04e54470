/** Shared pieces of the checks: probe availability, finding builders, levels and message parts. */
import { resultOf, type SnapshotMap } from '../probes/index.js';
import type { Results } from '../probes/runner.js';
import type { ProbeId } from '../probes/types.js';
import type { Finding, FindingContext, FindingSession, Severity } from './types.js';

/** The runbook anchor of a check in docs/alerts.md. */
export function runbookLink(checkId: string): string {
  return `docs/alerts.md#${checkId}`;
}

/** Why a probe gives nothing to evaluate, or undefined when it has a fresh snapshot. */
export function unavailableReason(results: Results, id: ProbeId): string | undefined {
  const result = resultOf(results, id);
  switch (result.status) {
    case 'ok':
      return undefined;
    case 'pending':
      return `the ${id} probe has not run yet`;
    case 'unsupported':
      return `the ${id} probe cannot run here: ${result.unsupported.reason} (fix: ${result.unsupported.fix})`;
    case 'error':
      return `the ${id} probe failed: ${result.error.message}`;
  }
}

/** The UNKNOWN finding of a check that could not be evaluated: the reason, never a guess. */
export function unknownFinding(checkId: string, reason: string, subject = 'cluster'): Finding {
  return {
    checkId, severity: 'unknown', subject, value: null, threshold: null, warningThreshold: null, unit: '',
    message: `cannot evaluate: ${reason}`, context: {}, runbook: runbookLink(checkId),
  };
}

/** A fresh snapshot of one probe, or the UNKNOWN finding that says why there is none (a stale snapshot is not evaluated). */
export function snapshotOf<K extends ProbeId>(
  checkId: string,
  results: Results,
  id: K,
): { readonly snapshot: SnapshotMap[K]; readonly unknown: undefined } | { readonly snapshot: undefined; readonly unknown: Finding } {
  const result = resultOf(results, id);
  if (result.status === 'ok') return { snapshot: result.snapshot, unknown: undefined };
  return { snapshot: undefined, unknown: unknownFinding(checkId, unavailableReason(results, id) ?? `the ${id} probe gave nothing`) };
}

/** The fresh snapshot of a probe, or undefined (for inputs a check can do without). */
export function optionalSnapshot<K extends ProbeId>(results: Results, id: K): SnapshotMap[K] | undefined {
  const result = resultOf(results, id);
  return result.status === 'ok' ? result.snapshot : undefined;
}

/** ok / warning / critical for a value where higher is worse. */
export function level(value: number, warning: number, critical: number): Severity {
  if (value >= critical) return 'critical';
  if (value >= warning) return 'warning';
  return 'ok';
}

export interface FindingFields {
  readonly severity: Severity;
  readonly subject: string;
  readonly value: number | null;
  readonly threshold: number | null;
  readonly warningThreshold: number | null;
  readonly unit: string;
  readonly message: string;
  readonly context?: FindingContext;
}

/** A finding of a check, with its runbook link. */
export function finding(checkId: string, fields: FindingFields): Finding {
  return { checkId, ...fields, context: fields.context ?? {}, runbook: runbookLink(checkId) };
}

/** The threshold a severity refers to: the critical one for critical findings, else the warning one. */
export function thresholdFor(severity: Severity, warning: number, critical: number): number {
  return severity === 'critical' ? critical : warning;
}

/** "(critical ≥ 15m00s)" for a finding of that severity, formatted with `format`. */
export function against(severity: Severity, warning: number, critical: number, format: (n: number) => string): string {
  if (severity === 'critical') return `(critical ≥ ${format(critical)})`;
  return `(warning ≥ ${format(warning)})`;
}

/** "pid 101 (alice, orders-api, 10.0.0.11)": who a session is, as a message names it. */
export function whoIs(session: { readonly pid: number; readonly user: string | null; readonly application: string | null; readonly client?: string | null }): string {
  const parts = [session.user ?? '?', session.application === null || session.application === '' ? null : session.application, session.client ?? null]
    .filter((part): part is string => part !== null);
  return `pid ${session.pid} (${parts.join(', ')})`;
}

/** The notice context of a session. */
export function sessionContext(session: {
  readonly pid: number;
  readonly user: string | null;
  readonly application: string | null;
  readonly client?: string | null;
  readonly query: string | null;
}): FindingSession {
  return { pid: session.pid, user: session.user, application: session.application, client: session.client ?? null, query: session.query };
}

/** A plain record from `previous`, or undefined when it is not one (a state from another version, say). */
export function recordOf(previous: unknown): Readonly<Record<string, unknown>> | undefined {
  return typeof previous === 'object' && previous !== null && !Array.isArray(previous) ? (previous as Record<string, unknown>) : undefined;
}

/** A finite number or undefined. */
export function numberIn(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
