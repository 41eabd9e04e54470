/**
 * The per-alert state machine: inactive → pending → firing → resolved, with UNKNOWN as a state of
 * its own (a check that could not run is never taken for ok), severity changes on a firing alert,
 * and flapping detection. Pure: alerts in, alerts and events out.
 */
import type {
  Acknowledgement,
  AlertEvent,
  AlertEventKind,
  AlertRecord,
  AlertSeverity,
  Evaluation,
  FindingInput,
  StateOptions,
} from './types.js';

/** DESIGN §5: fire after two failing evaluations; ≥ 4 changes in 30 min is flapping. */
export const defaultStateOptions: StateOptions = {
  failuresToFire: 2,
  flapChanges: 4,
  flapWindowMs: 30 * 60_000,
  flapStableMs: 30 * 60_000,
};

const rank: Readonly<Record<AlertSeverity, number>> = { info: 1, warning: 2, unknown: 2, critical: 3 };

/** Orders severities for routing and escalation (unknown ranks with warning). */
export function severityRank(severity: AlertSeverity | 'ok'): number {
  return severity === 'ok' ? 0 : rank[severity];
}

/** The identity of an alert: cluster + node + check + subject. */
export function alertKey(cluster: string, node: string, checkId: string, subject: string): string {
  return JSON.stringify([cluster, node, checkId, subject]);
}

type Alerts = Readonly<Record<string, AlertRecord>>;

interface Applied {
  readonly alerts: Alerts;
  readonly events: readonly AlertEvent[];
}

function event(kind: AlertEventKind, alert: AlertRecord, now: number, previousSeverity: AlertSeverity | null): AlertEvent {
  return {
    kind,
    at: new Date(now),
    key: alert.key,
    cluster: alert.cluster,
    node: alert.node,
    checkId: alert.checkId,
    subject: alert.subject,
    severity: alert.severity,
    previousSeverity,
    firstSeen: new Date(alert.firstSeen),
    finding: alert.finding,
  };
}

function okFinding(alert: AlertRecord): FindingInput {
  return { ...alert.finding, severity: 'ok', value: null, message: `${alert.subject} is no longer reported` };
}

function recordChange(alert: AlertRecord, now: number, options: StateOptions): readonly number[] {
  return [...alert.changes.filter((at) => now - at < options.flapWindowMs), now];
}

/**
 * One evaluation of one alert. `finding` is undefined when the check ran and did not report the
 * subject (it went away, which counts as ok).
 */
function step(
  previous: AlertRecord | undefined,
  identity: { cluster: string; node: string; checkId: string; subject: string; key: string },
  finding: FindingInput,
  now: number,
  options: StateOptions,
): { alert: AlertRecord | undefined; events: AlertEvent[] } {
  const events: AlertEvent[] = [];
  const severity = finding.severity;
  if (previous === undefined || previous.status === 'resolved') {
    if (severity === 'ok') return { alert: previous, events };
    const fresh: AlertRecord = {
      ...identity,
      status: 'pending',
      severity,
      streak: 1,
      unknownStreak: 0,
      firstSeen: now,
      firingSince: null,
      criticalSince: null,
      resolvedAt: null,
      lastEvaluated: now,
      finding,
      changes: previous?.changes ?? [],
      flapping: previous?.flapping ?? false,
      acknowledged: null,
    };
    return promote(fresh, now, options, events);
  }

  if (previous.status === 'pending') {
    if (severity === 'ok') return { alert: undefined, events };
    return promote({ ...previous, severity, streak: previous.streak + 1, lastEvaluated: now, finding }, now, options, events);
  }

  if (severity === 'ok') {
    const resolved: AlertRecord = {
      ...previous,
      status: 'resolved',
      resolvedAt: now,
      criticalSince: null,
      lastEvaluated: now,
      finding,
      streak: 0,
      unknownStreak: 0,
      acknowledged: null,
      changes: recordChange(previous, now, options),
    };
    events.push(event('resolved', resolved, now, previous.severity));
    return flap(resolved, now, options, events);
  }

  if (severity === 'unknown') {
    if (previous.status === 'unknown') return { alert: { ...previous, lastEvaluated: now, finding }, events };
    // A firing alert keeps its last known severity until the check has failed to run N times.
    const unknownStreak = previous.unknownStreak + 1;
    if (unknownStreak < options.failuresToFire) return { alert: { ...previous, unknownStreak, lastEvaluated: now }, events };
    const unknown: AlertRecord = {
      ...previous,
      status: 'unknown',
      severity: 'unknown',
      criticalSince: null,
      unknownStreak,
      lastEvaluated: now,
      finding,
      changes: recordChange(previous, now, options),
    };
    events.push(event('unknown', unknown, now, previous.severity));
    return flap(unknown, now, options, events);
  }

  if (previous.status === 'unknown') {
    const firing: AlertRecord = {
      ...previous,
      status: 'firing',
      severity,
      unknownStreak: 0,
      criticalSince: severity === 'critical' ? now : null,
      lastEvaluated: now,
      finding,
      changes: recordChange(previous, now, options),
    };
    events.push(event('firing', firing, now, previous.severity));
    return flap(firing, now, options, events);
  }

  // Firing, still failing: the severity may move either way without resolving (hysteresis).
  const moved: AlertRecord = {
    ...previous,
    severity,
    unknownStreak: 0,
    criticalSince: severity === 'critical' ? (previous.criticalSince ?? now) : null,
    lastEvaluated: now,
    finding,
  };
  if (rank[severity] > rank[previous.severity]) events.push(event('escalated', moved, now, previous.severity));
  else if (rank[severity] < rank[previous.severity]) events.push(event('de-escalated', moved, now, previous.severity));
  return { alert: moved, events };
}

function promote(alert: AlertRecord, now: number, options: StateOptions, events: AlertEvent[]): { alert: AlertRecord; events: AlertEvent[] } {
  if (alert.streak < options.failuresToFire) return { alert, events };
  const unknown = alert.severity === 'unknown';
  const promoted: AlertRecord = {
    ...alert,
    status: unknown ? 'unknown' : 'firing',
    firingSince: now,
    criticalSince: alert.severity === 'critical' ? now : null,
    changes: recordChange(alert, now, options),
  };
  events.push(event(unknown ? 'unknown' : 'firing', promoted, now, null));
  return flap(promoted, now, options, events);
}

function flap(alert: AlertRecord, now: number, options: StateOptions, events: AlertEvent[]): { alert: AlertRecord; events: AlertEvent[] } {
  const recent = alert.changes.filter((at) => now - at < options.flapWindowMs).length;
  if (alert.flapping || recent < options.flapChanges) return { alert, events };
  const flapping = { ...alert, flapping: true };
  events.push(event('flapping', flapping, now, null));
  return { alert: flapping, events };
}

/**
 * Applies evaluations to the alerts: each finding moves its alert; alerts of checks that ran but
 * no longer report their subject are treated as ok.
 */
export function applyEvaluations(alerts: Alerts, evaluations: readonly Evaluation[], options: StateOptions, now: Date): Applied {
  const at = now.getTime();
  const next = new Map(Object.entries(alerts));
  const events: AlertEvent[] = [];
  for (const evaluation of evaluations) {
    const { cluster, node } = evaluation;
    const checks = new Set(evaluation.checks ?? evaluation.findings.map((finding) => finding.checkId));
    const seen = new Set<string>();
    for (const finding of evaluation.findings) {
      const key = alertKey(cluster, node, finding.checkId, finding.subject);
      seen.add(key);
      const result = step(next.get(key), { cluster, node, checkId: finding.checkId, subject: finding.subject, key }, finding, at, options);
      if (result.alert === undefined) next.delete(key);
      else next.set(key, result.alert);
      events.push(...result.events);
    }
    for (const alert of Object.values(alerts)) {
      if (alert.cluster !== cluster || alert.node !== node || !checks.has(alert.checkId) || seen.has(alert.key)) continue;
      const current = next.get(alert.key);
      if (current === undefined) continue;
      const result = step(current, alert, okFinding(current), at, options);
      if (result.alert === undefined) next.delete(alert.key);
      else next.set(alert.key, result.alert);
      events.push(...result.events);
    }
  }
  return { alerts: Object.fromEntries(next), events };
}

/**
 * Time passing without evaluations: a flapping alert becomes stable after flapStableMs without a
 * change, and resolved alerts are forgotten once their changes have left the flap window.
 */
export function settleAlerts(alerts: Alerts, options: StateOptions, now: Date): Alerts {
  const at = now.getTime();
  const next: Record<string, AlertRecord> = {};
  for (const alert of Object.values(alerts)) {
    const last = alert.changes.at(-1);
    const quietFor = last === undefined ? Number.POSITIVE_INFINITY : at - last;
    const flapping = alert.flapping && quietFor < options.flapStableMs;
    if (alert.status === 'resolved' && !flapping && quietFor >= options.flapWindowMs) continue;
    next[alert.key] = flapping === alert.flapping ? alert : { ...alert, flapping };
  }
  return next;
}

/** Acknowledges a firing or unknown alert: it stops repeating and escalating, and still resolves. */
export function acknowledgeAlert(alerts: Alerts, key: string, by: string, comment: string, now: Date): Alerts {
  const alert = alerts[key];
  if (alert === undefined || (alert.status !== 'firing' && alert.status !== 'unknown')) return alerts;
  const acknowledged: Acknowledgement = { by, comment, at: now.getTime() };
  return { ...alerts, [key]: { ...alert, acknowledged } };
}

/** Removes an acknowledgement. */
export function unacknowledgeAlert(alerts: Alerts, key: string): Alerts {
  const alert = alerts[key];
  if (alert?.acknowledged == null) return alerts;
  return { ...alerts, [key]: { ...alert, acknowledged: null } };
}
