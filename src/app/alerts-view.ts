/**
 * What the console shows of its own alert engine (src/app/alert-monitor.ts runs it), and the pure
 * readings of it that the Alerts view, the Overview and the detail pane share: which section an
 * alert belongs to, the counts by severity, the worst firing alerts, values against thresholds.
 * No React, no I/O.
 */
import { activeSilence, inhibitedBy } from '../alerts/silences.js';
import { severityRank } from '../alerts/state.js';
import type { AlertEvent, AlertRecord, EngineState, Silence } from '../alerts/types.js';
import { formatBytes, formatCount, formatDuration, formatPercent } from '../format/units.js';

/** The console's alert engine as the screens see it. */
export interface AlertsView {
  readonly engine: EngineState;
  /** The latest alert events (fired, escalated, resolved…), newest first. */
  readonly history: readonly AlertEvent[];
  /** alerting.state_dir: where a watcher keeps its state and reads queued commands. */
  readonly stateDir: string;
  /** Whether a watcher's state file was found there (no: nobody sends notices). */
  readonly watcher: boolean;
  /** When the engine last took in an evaluation; null before the first. */
  readonly evaluatedAt: Date | null;
  /** How many nodes and checks the engine evaluates. */
  readonly nodes: number;
  readonly checks: number;
}

/** Where an alert sits on the Alerts view. */
export type AlertSection = 'firing' | 'pending' | 'unknown' | 'muted';

/** An alert with what holds its notices back. */
export interface AlertEntry {
  readonly alert: AlertRecord;
  readonly section: AlertSection;
  /** The silence covering it now, if any. */
  readonly silence: Silence | null;
  /** Why it is inhibited (a critical on the same subject, the instance down), or null. */
  readonly inhibited: string | null;
}

/** The alerts by section, each worst first, with the silences and the recent history. */
export interface AlertSections {
  readonly firing: readonly AlertEntry[];
  readonly pending: readonly AlertEntry[];
  readonly unknown: readonly AlertEntry[];
  /** Silenced or acknowledged alerts. */
  readonly muted: readonly AlertEntry[];
  /** Every silence not yet expired (scheduled ones too), ending soonest first. */
  readonly silences: readonly Silence[];
  readonly history: readonly AlertEvent[];
}

/** Worst first: higher severity, then the oldest, then by key (a stable order across refreshes). */
export function compareAlerts(a: AlertRecord, b: AlertRecord): number {
  const bySeverity = severityRank(b.severity) - severityRank(a.severity);
  if (bySeverity !== 0) return bySeverity;
  const since = (alert: AlertRecord): number => alert.firingSince ?? alert.firstSeen;
  return since(a) - since(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

/** The section and mute reasons of one alert; undefined for a resolved alert (history shows it). */
export function entryOf(engine: EngineState, alert: AlertRecord, now: Date): AlertEntry | undefined {
  if (alert.status === 'resolved') return undefined;
  const silence = activeSilence(engine.silences, alert, now) ?? null;
  const inhibited = inhibitedBy(engine.alerts, alert);
  const section: AlertSection = silence !== null || alert.acknowledged !== null ? 'muted' : alert.status;
  return { alert, section, silence, inhibited };
}

/** Splits the engine's alerts into the Alerts view's sections. */
export function alertSections(view: AlertsView, now: Date): AlertSections {
  const entries = Object.values(view.engine.alerts)
    .sort(compareAlerts)
    .flatMap((alert) => entryOf(view.engine, alert, now) ?? []);
  const at = now.getTime();
  return {
    firing: entries.filter((entry) => entry.section === 'firing'),
    pending: entries.filter((entry) => entry.section === 'pending'),
    unknown: entries.filter((entry) => entry.section === 'unknown'),
    muted: entries.filter((entry) => entry.section === 'muted'),
    silences: view.engine.silences.filter((silence) => silence.endsAt > at).sort((a, b) => a.endsAt - b.endsAt || (a.id < b.id ? -1 : 1)),
    history: view.history,
  };
}

/** Firing and unknown alerts by severity, with how many of them are silenced or acknowledged, and the pending ones. */
export interface AlertCounts {
  readonly critical: number;
  readonly warning: number;
  readonly info: number;
  readonly unknown: number;
  readonly muted: number;
  readonly pending: number;
}

/** The counts the Overview shows. */
export function alertCounts(view: AlertsView, now: Date): AlertCounts {
  const counts = { critical: 0, warning: 0, info: 0, unknown: 0, muted: 0, pending: 0 };
  for (const alert of Object.values(view.engine.alerts)) {
    const entry = entryOf(view.engine, alert, now);
    if (entry === undefined) continue;
    if (alert.status === 'pending') {
      counts.pending += 1;
      continue;
    }
    counts[alert.status === 'unknown' ? 'unknown' : alert.severity] += 1;
    if (entry.section === 'muted') counts.muted += 1;
  }
  return counts;
}

/** The worst firing alerts, then the unknown ones, then those someone silenced or acknowledged. */
export function topAlerts(view: AlertsView, now: Date, count: number): readonly AlertEntry[] {
  const sections = alertSections(view, now);
  const muted = sections.muted.filter((entry) => entry.alert.status !== 'pending');
  return [...sections.firing, ...sections.unknown, ...muted].slice(0, Math.max(0, count));
}

/** A measured value in its unit, as people read it: "4m10s", "1.2 GB", "85.0%", "12". */
export function formatValue(value: number | null, unit: string): string {
  if (value === null) return '-';
  switch (unit) {
    case 'seconds':
      return formatDuration(value);
    case 'bytes':
      return formatBytes(value);
    case 'fraction':
      return formatPercent(value);
    case 'ms':
      return value < 10 ? `${value.toFixed(1)}ms` : `${Math.round(value)}ms`;
    case 'count':
    case '':
      return Number.isInteger(value) ? formatCount(value) : String(Math.round(value * 100) / 100);
    default:
      return `${Number.isInteger(value) ? formatCount(value) : String(Math.round(value * 100) / 100)} ${unit}`;
  }
}

/** "4m10s / 1.0s": the value against the threshold it crossed ("-" when neither is known). */
export function valueAgainst(value: number | null, threshold: number | null, unit: string): string {
  if (value === null && threshold === null) return '-';
  return threshold === null ? formatValue(value, unit) : `${formatValue(value, unit)} / ${formatValue(threshold, unit)}`;
}

/** How long ago an epoch-ms moment was, "3m07s". */
export function elapsed(at: number, now: Date): string {
  const seconds = Math.max(0, Math.floor((now.getTime() - at) / 1000));
  return seconds === 0 ? '0s' : formatDuration(seconds);
}

/** The cluster and node of an alert: "prod/db1". */
export function placeOf(alert: { readonly cluster: string; readonly node: string }): string {
  return `${alert.cluster}/${alert.node}`;
}

/** What a silence matches, in words: "idle-in-transaction pid 42 on prod/db1". */
export function silenceScope(silence: Silence): string {
  const check = silence.checkId ?? 'every check';
  const subject = silence.subject === undefined ? '' : ` ${silence.subject}`;
  const where = silence.cluster === undefined && silence.node === undefined ? 'everywhere' : `on ${silence.cluster ?? '*'}/${silence.node ?? '*'}`;
  return `${check}${subject} ${where}`;
}

/** Local time of day "14:05:09" of an epoch-ms moment. */
export function timeOfDay(at: number | Date): string {
  const date = typeof at === 'number' ? new Date(at) : at;
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** The status of a muted alert in a few words: "acknowledged by ann", "silenced to 14:05". */
export function mutedState(entry: AlertEntry): string {
  if (entry.alert.acknowledged !== null) return `acknowledged by ${entry.alert.acknowledged.by}`;
  if (entry.silence !== null) return `silenced to ${timeOfDay(entry.silence.endsAt).slice(0, 5)}`;
  return '';
}

/** The Alerts view's row key of an alert. */
export function alertRowKey(alertKey: string): string {
  return `alert:${alertKey}`;
}

/** The Alerts view's row key of a silence. */
export function silenceRowKey(id: string): string {
  return `silence:${id}`;
}

/** The Alerts view's row key of a history event (stable while it stays in the history). */
export function eventRowKey(event: AlertEvent): string {
  return `event:${event.at.getTime()}:${event.kind}:${event.key}`;
}

/** A toast the console shows for an alert event. */
export interface AlertToast {
  readonly level: 'info' | 'warning' | 'error';
  readonly text: string;
}

/**
 * Toasts for the events of one engine step: an alert that starts firing, or escalates to
 * critical, and that no silence or inhibition mutes.
 */
export function alertToasts(view: AlertsView, events: readonly AlertEvent[], now: Date): readonly AlertToast[] {
  const out: AlertToast[] = [];
  for (const event of events) {
    const toCritical = event.kind === 'escalated' && event.severity === 'critical';
    if (event.kind !== 'firing' && !toCritical) continue;
    const alert = view.engine.alerts[event.key];
    if (alert !== undefined && (activeSilence(view.engine.silences, alert, now) !== undefined || inhibitedBy(view.engine.alerts, alert) !== null)) continue;
    const what = `${event.checkId} ${event.subject} on ${placeOf(event)}: ${valueAgainst(event.finding.value, event.finding.threshold, event.finding.unit)}`;
    if (event.severity === 'critical') out.push({ level: 'error', text: `CRITICAL alert ${toCritical ? 'escalated' : 'firing'}: ${what}` });
    else out.push({ level: event.severity === 'warning' ? 'warning' : 'info', text: `alert firing: ${what}` });
  }
  return out;
}
