/**
 * The detail pane of an Alerts view row (pure): a finding's message, its value against the
 * threshold, its context (sessions, lock tree, lag, details), what mutes it, and the runbook
 * anchor with its steps; a silence's matchers, expiry and comment; a history event's finding.
 */
import { muteReason } from '../alerts/engine.js';
import { silenceMatches } from '../alerts/silences.js';
import type { AlertEvent, AlertRecord, FindingInput, Silence } from '../alerts/types.js';
import { checkById } from '../checks/catalogue.js';
import { formatBytes, formatDuration } from '../format/units.js';
import { alertRowKey, elapsed, eventRowKey, placeOf, silenceRowKey, silenceScope, timeOfDay, valueAgainst, type AlertsView } from './alerts-view.js';
import type { Detail, DetailSection } from './detail.js';

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown): string {
  if (value === null || value === undefined || value === '') return '-';
  return typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}

/** The context of a finding as detail sections: sessions, lock tree, lag, other details. */
export function contextSections(context: object): DetailSection[] {
  const sections: DetailSection[] = [];
  const record = context as Record<string, unknown>;
  const sessions = Array.isArray(record['sessions']) ? record['sessions'].filter(isRecord) : [];
  if (sessions.length > 0) {
    sections.push({
      heading: sessions.length === 1 ? 'session' : `sessions (${sessions.length})`,
      lines: sessions.flatMap((session) => [
        `pid ${text(session['pid'])}  user ${text(session['user'])}  application ${text(session['application'])}  client ${text(session['client'])}`,
        `  ${text(session['query'])}`,
      ]),
    });
  }
  const tree = Array.isArray(record['lockTree']) ? record['lockTree'].filter((line): line is string => typeof line === 'string') : [];
  if (tree.length > 0) sections.push({ heading: 'lock tree', lines: tree });
  const lag = record['lag'];
  if (isRecord(lag)) {
    const bytes = typeof lag['bytes'] === 'number' ? lag['bytes'] : null;
    const seconds = typeof lag['seconds'] === 'number' ? lag['seconds'] : null;
    sections.push({ heading: 'lag', lines: [`${formatBytes(bytes)} behind, ${formatDuration(seconds)}`] });
  }
  const details = record['details'];
  if (isRecord(details) && Object.keys(details).length > 0) {
    sections.push({ heading: 'details', lines: Object.entries(details).map(([key, value]) => `${key}: ${text(value)}`) });
  }
  return sections;
}

/** The runbook of a check: where it is, what the alert means and the steps. */
export function runbookSection(checkId: string, anchor: string): DetailSection {
  const check = checkById(checkId);
  if (check === undefined) return { heading: 'runbook', lines: [anchor] };
  return { heading: `runbook: ${anchor}`, lines: [check.runbook.summary, ...check.runbook.steps.map((step, index) => `${index + 1}. ${step}`)] };
}

function findingLines(finding: FindingInput): string[] {
  return [finding.message, `value ${valueAgainst(finding.value, finding.threshold, finding.unit)}`];
}

function alertDetail(view: AlertsView, alert: AlertRecord, now: Date): Detail {
  const state: string[] = [
    `${alert.status}${alert.flapping ? ', flapping' : ''} · first seen ${timeOfDay(alert.firstSeen)} (${elapsed(alert.firstSeen, now)} ago)` +
      (alert.firingSince === null ? '' : ` · firing since ${timeOfDay(alert.firingSince)} (${elapsed(alert.firingSince, now)})`) +
      (alert.resolvedAt === null || alert.status !== 'resolved' ? '' : ` · resolved ${timeOfDay(alert.resolvedAt)}`),
  ];
  if (alert.acknowledged !== null) {
    state.push(`acknowledged by ${alert.acknowledged.by} at ${timeOfDay(alert.acknowledged.at)}${alert.acknowledged.comment === '' ? '' : `: ${alert.acknowledged.comment}`}`);
  }
  const muted = muteReason(view.engine, alert, now);
  if (muted !== null) state.push(`notices held: ${muted}`);
  return {
    title: `${alert.severity} ${alert.checkId} ${alert.subject} on ${placeOf(alert)}`,
    sections: [
      { heading: 'finding', lines: findingLines(alert.finding) },
      { heading: 'state', lines: state },
      ...contextSections(alert.finding.context),
      runbookSection(alert.checkId, alert.finding.runbook),
    ],
  };
}

function silenceDetail(view: AlertsView, silence: Silence, now: Date): Detail {
  const covered = Object.values(view.engine.alerts).filter((alert) => alert.status !== 'resolved' && silenceMatches(silence, alert));
  return {
    title: `silence of ${silenceScope(silence)}`,
    sections: [
      {
        heading: 'silence',
        lines: [
          `from ${timeOfDay(silence.startsAt)} until ${timeOfDay(silence.endsAt)} (${formatDuration(Math.max(0, Math.floor((silence.endsAt - now.getTime()) / 1000)))} left)`,
          `by ${silence.author}: ${silence.comment}`,
          `id ${silence.id}`,
        ],
      },
      {
        heading: 'covers now',
        lines: covered.length === 0 ? ['no active alert'] : covered.map((alert) => `${alert.severity} ${alert.checkId} ${alert.subject} on ${placeOf(alert)}`),
      },
    ],
  };
}

function eventDetail(event: AlertEvent): Detail {
  const change = event.previousSeverity === null ? event.kind : `${event.kind} (was ${event.previousSeverity})`;
  return {
    title: `${event.kind}: ${event.checkId} ${event.subject} on ${placeOf(event)}`,
    sections: [
      { heading: 'event', lines: [`${change} at ${timeOfDay(event.at)}, ${event.severity}; first seen ${timeOfDay(event.firstSeen)}`] },
      { heading: 'finding', lines: findingLines(event.finding) },
      ...contextSections(event.finding.context),
      runbookSection(event.checkId, event.finding.runbook),
    ],
  };
}

/** The detail of the Alerts view row with this key, or why there is none any more. */
export function alertRowDetail(view: AlertsView | undefined, rowKey: string, now: Date): Detail {
  if (view === undefined) return { title: 'alert', sections: [{ heading: 'gone', lines: ['The alert engine is not running in this console.'] }] };
  const alert = Object.values(view.engine.alerts).find((candidate) => alertRowKey(candidate.key) === rowKey);
  if (alert !== undefined) return alertDetail(view, alert, now);
  const silence = view.engine.silences.find((candidate) => silenceRowKey(candidate.id) === rowKey);
  if (silence !== undefined) return silenceDetail(view, silence, now);
  const event = view.history.find((candidate) => eventRowKey(candidate) === rowKey);
  if (event !== undefined) return eventDetail(event);
  return { title: 'alert', sections: [{ heading: 'gone', lines: ['No longer known to the alert engine: it resolved and left the history, or the silence expired.'] }] };
}
