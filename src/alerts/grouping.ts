/**
 * Notification groups (one team, one channel, one cluster, one check) and their timing: wait
 * before the first notice, a minimum interval between updates, a repeat while firing, resolved
 * notices in the same thread, and the per-alert cooldown. A group remembers what it last told its
 * recipients and sends the difference, so a change held back (quiet hours, rate limit, cooldown,
 * flapping) is delivered later with the truth at that time rather than lost.
 */
import { severityRank } from './state.js';
import type { AlertSeverity, GroupState, GroupTiming, NoticeAlertData, NoticeKind, SentAlert } from './types.js';

/** DESIGN §6: 30 s, 5 min, 4 h. */
export const defaultTiming: GroupTiming = {
  groupWaitMs: 30_000,
  groupIntervalMs: 5 * 60_000,
  repeatIntervalMs: 4 * 3_600_000,
};

/** A short stable hash (two FNV-1a rounds, 16 hex digits) for ids that go into Message-ID. */
export function hashText(text: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    a = Math.imul(a ^ code, 0x01000193) >>> 0;
    b = Math.imul(b ^ code, 0x01000193 + 2) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

/** Identity of a group. */
export function groupKey(team: string, channel: string, cluster: string, checkId: string): string {
  return JSON.stringify([team, channel, cluster, checkId]);
}

/** A group with nothing sent yet. */
export function emptyGroup(team: string, channel: string, cluster: string, checkId: string): GroupState {
  return {
    key: groupKey(team, channel, cluster, checkId),
    team,
    channel,
    cluster,
    checkId,
    threadId: null,
    seq: 0,
    activeSince: null,
    lastNoticeAt: null,
    sent: {},
    heldFingerprint: null,
    cooldownFingerprint: null,
    suppressed: 0,
    notifiedAt: {},
  };
}

/** True when nothing about the group needs to be remembered. */
export function groupIsIdle(group: GroupState): boolean {
  return group.threadId === null && group.activeSince === null && group.suppressed === 0 && Object.keys(group.notifiedAt).length === 0;
}

/** What the group sees in this step. */
export interface GroupView {
  /** Active alerts (firing, unknown, flapping) routed here and not muted. */
  readonly current: readonly NoticeAlertData[];
  /** Active alerts routed here but silenced or inhibited: their last notice stands. */
  readonly muted: ReadonlySet<string>;
  /** The latest data of alerts that still exist (for resolved notices with the ok value). */
  readonly latest: ReadonlyMap<string, NoticeAlertData>;
}

export interface GroupPolicy {
  readonly timing: GroupTiming;
  readonly cooldownMs: number;
  readonly sendResolved: boolean;
  /** True when quiet hours hold a notice of this severity. */
  readonly quiet: (severity: AlertSeverity | 'ok') => boolean;
}

export interface NoticeDraft {
  readonly threadId: string;
  readonly seq: number;
  readonly kind: NoticeKind;
  readonly severity: AlertSeverity | 'ok';
  readonly alerts: readonly NoticeAlertData[];
  /** Keys of the alerts that are new or changed since the last notice. */
  readonly changed: readonly string[];
  readonly repeat: boolean;
}

export type GroupOutcome =
  | { readonly action: 'idle' | 'wait' | 'quiet'; readonly group: GroupState }
  | { readonly action: 'send'; readonly group: GroupState; readonly draft: NoticeDraft; readonly fingerprint: string };

function fingerprint(alerts: readonly NoticeAlertData[]): string {
  return JSON.stringify(alerts.map((alert) => [alert.key, alert.status, alert.severity]));
}

function maxSeverity(alerts: readonly NoticeAlertData[]): AlertSeverity | 'ok' {
  let best: AlertSeverity | 'ok' = 'ok';
  for (const alert of alerts) {
    if (alert.status === 'resolved') continue;
    // unknown ranks with warning for routing, but a known warning says more in a subject line.
    if (severityRank(alert.severity) > severityRank(best) || (best === 'unknown' && alert.severity === 'warning')) best = alert.severity;
  }
  return best;
}

/** Decides whether the group sends a notice now, and its state afterwards if it does. */
export function decideGroup(group: GroupState, view: GroupView, policy: GroupPolicy, now: Date): GroupOutcome {
  const at = now.getTime();
  const { timing } = policy;
  const notifiedAt = Object.fromEntries(Object.entries(group.notifiedAt).filter(([, when]) => at - when < policy.cooldownMs));
  const currentKeys = new Set(view.current.map((alert) => alert.key));

  const triggers: NoticeAlertData[] = [];
  const held: NoticeAlertData[] = [];
  for (const alert of view.current) {
    const previous = group.sent[alert.key];
    if (previous !== undefined && previous.status === alert.status && previous.severity === alert.severity) continue;
    const last = notifiedAt[alert.key];
    const toCritical = alert.severity === 'critical' && previous?.severity !== 'critical';
    if (last !== undefined && !toCritical) held.push(alert);
    else triggers.push(alert);
  }
  const resolved: NoticeAlertData[] = [];
  for (const [key, sent] of Object.entries(group.sent)) {
    if (currentKeys.has(key) || view.muted.has(key)) continue;
    resolved.push({ ...(view.latest.get(key) ?? sent.alert), status: 'resolved' });
  }

  const nextSent: Record<string, SentAlert> = {};
  for (const [key, sent] of Object.entries(group.sent)) if (view.muted.has(key)) nextSent[key] = sent;
  for (const alert of view.current) nextSent[alert.key] = { key: alert.key, status: toSentStatus(alert.status), severity: alert.severity, at, alert };
  const closes = Object.keys(nextSent).length === 0;

  const open = group.threadId !== null;
  const resolvedTriggers = policy.sendResolved ? resolved : [];
  let kind: NoticeKind;
  let repeat = false;
  let activeSince = group.activeSince;

  if (!open) {
    if (triggers.length === 0) {
      return { action: 'idle', group: withCooldownCount({ ...group, notifiedAt, activeSince: view.current.length === 0 ? null : activeSince }, held) };
    }
    activeSince ??= at;
    if (at - activeSince < timing.groupWaitMs) return { action: 'wait', group: { ...group, notifiedAt, activeSince } };
    kind = 'firing';
  } else if (triggers.length > 0 || resolved.length > 0) {
    if (triggers.length === 0 && resolvedTriggers.length === 0) {
      // Resolved notices are off: forget the resolved alerts without a word, as configured.
      const quietGroup = closes ? closeThread(group) : { ...group, sent: nextSent };
      return { action: 'idle', group: { ...quietGroup, notifiedAt } };
    }
    if (group.lastNoticeAt !== null && at - group.lastNoticeAt < timing.groupIntervalMs) return { action: 'wait', group: { ...group, notifiedAt } };
    kind = closes ? 'resolved' : 'update';
  } else {
    const unacknowledged = view.current.some((alert) => alert.status !== 'flapping' && alert.acknowledgedBy === null);
    const due = group.lastNoticeAt !== null && at - group.lastNoticeAt >= timing.repeatIntervalMs;
    if (!unacknowledged || !due) return { action: 'idle', group: withCooldownCount({ ...group, notifiedAt }, held) };
    kind = 'update';
    repeat = true;
  }

  const alerts = [...view.current, ...resolvedTriggers].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const severity = maxSeverity(alerts);
  if (policy.quiet(severity)) return { action: 'quiet', group: { ...group, notifiedAt, activeSince } };

  for (const alert of [...triggers, ...resolvedTriggers, ...held]) notifiedAt[alert.key] = at;
  const threadId = group.threadId ?? `${hashText(group.key)}-${(activeSince ?? at).toString(36)}`;
  const seq = group.seq + 1;
  const draft: NoticeDraft = {
    threadId,
    seq,
    kind,
    severity,
    alerts,
    changed: [...triggers, ...resolvedTriggers, ...held].map((alert) => alert.key),
    repeat,
  };
  const sentGroup: GroupState = closes
    ? { ...closeThread(group), notifiedAt, heldFingerprint: null }
    : { ...group, threadId, seq, activeSince, lastNoticeAt: at, sent: nextSent, notifiedAt, heldFingerprint: null, cooldownFingerprint: null, suppressed: 0 };
  return { action: 'send', group: sentGroup, draft, fingerprint: fingerprint(alerts) };
}

function toSentStatus(status: NoticeAlertData['status']): SentAlert['status'] {
  return status === 'resolved' ? 'firing' : status;
}

function closeThread(group: GroupState): GroupState {
  return { ...group, threadId: null, seq: 0, activeSince: null, lastNoticeAt: null, sent: {}, cooldownFingerprint: null, suppressed: 0 };
}

/** Counts a change held back by the cooldown once, however many steps it stays held. */
function withCooldownCount(group: GroupState, held: readonly NoticeAlertData[]): GroupState {
  if (held.length === 0) return group;
  const print = fingerprint(held);
  if (print === group.cooldownFingerprint) return group;
  return { ...group, cooldownFingerprint: print, suppressed: group.suppressed + 1 };
}

function formatValue(value: number | null, unit: string): string {
  if (value === null) return '-';
  const rounded = Number.isInteger(value) ? String(value) : value.toFixed(2);
  return unit === '' ? rounded : `${rounded} ${unit}`;
}

function formatContext(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string') return value;
  return JSON.stringify(value) ?? String(value);
}

/** The subject line: severity, cluster and check. */
export function noticeSubject(kind: NoticeKind, severity: AlertSeverity | 'ok', cluster: string, checkId: string, count: number): string {
  const label = kind === 'resolved' || severity === 'ok' ? 'RESOLVED' : severity.toUpperCase();
  const many = count > 1 ? ` (${count} alerts)` : '';
  return `[${label}] ${cluster}: ${checkId}${many}`;
}

/** The plain-text lines describing one alert: state, value against threshold, first seen, context, runbook. */
export function alertLines(alert: NoticeAlertData): string[] {
  const lines = [`${alert.status.toUpperCase()} ${alert.severity} ${alert.node} ${alert.subject}: ${alert.message}`];
  if (alert.value !== null || alert.threshold !== null) {
    lines.push(`  value ${formatValue(alert.value, alert.unit)} (threshold ${formatValue(alert.threshold, alert.unit)})`);
  }
  lines.push(`  first seen ${new Date(alert.firstSeen).toISOString()}`);
  if (alert.acknowledgedBy !== null) lines.push(`  acknowledged by ${alert.acknowledgedBy}`);
  if (alert.escalatedFrom !== null) lines.push(`  escalated: not acknowledged by team ${alert.escalatedFrom}`);
  for (const [key, value] of Object.entries(alert.context) as [string, unknown][]) lines.push(`  ${key}: ${formatContext(value)}`);
  if (alert.runbook !== '') lines.push(`  runbook: ${alert.runbook}`);
  return lines;
}

/** The notice body: the suppressed count first, then each alert. */
export function noticeBody(draft: Pick<NoticeDraft, 'alerts' | 'repeat'>, suppressedCount: number): string[] {
  const lines: string[] = [];
  if (suppressedCount > 0) lines.push(`${suppressedCount} notice${suppressedCount === 1 ? '' : 's'} suppressed`);
  if (draft.repeat) lines.push('Still firing (repeat).');
  for (const alert of draft.alerts) lines.push(...alertLines(alert));
  return lines;
}
