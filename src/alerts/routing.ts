/**
 * Which teams receive an alert: their minimum severity, the checks and clusters they care about,
 * quiet hours in their own time zone, and escalation of an unacknowledged critical to a second team.
 */
import { anyGlob } from './glob.js';
import { severityRank } from './state.js';
import type { AlertRecord, AlertSeverity, QuietHours, Team } from './types.js';

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Minutes since local midnight in the zone (DST-aware through Intl). */
export function localMinutes(now: Date, timeZone: string): number {
  let format = formatters.get(timeZone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, format);
  }
  let hour = 0;
  let minute = 0;
  for (const part of format.formatToParts(now)) {
    if (part.type === 'hour') hour = Number(part.value);
    else if (part.type === 'minute') minute = Number(part.value);
  }
  return hour * 60 + minute;
}

function parseClock(text: string): number {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text);
  if (match === null) throw new Error(`quiet hours: "${text}" is not HH:MM`);
  return Number(match[1]) * 60 + Number(match[2]);
}

/** True when `now` falls within the quiet hours (a range ending before it starts wraps midnight). */
export function inQuietHours(quiet: QuietHours, now: Date): boolean {
  const from = parseClock(quiet.from);
  const to = parseClock(quiet.to);
  const local = localMinutes(now, quiet.timeZone);
  if (from === to) return false;
  return from < to ? local >= from && local < to : local >= from || local < to;
}

/** True when the team must not be disturbed now for a notice of this severity. */
export function quietFor(team: Team, severity: AlertSeverity | 'ok', now: Date): boolean {
  if (team.quietHours === undefined || !inQuietHours(team.quietHours, now)) return false;
  return !(team.quietHours.criticalOverrides && severity === 'critical');
}

/** True when the team's own filters take the alert. */
export function teamWants(team: Team, alert: AlertRecord): boolean {
  return (
    severityRank(alert.severity) >= severityRank(team.minSeverity) &&
    anyGlob(team.checks, alert.checkId) &&
    anyGlob(team.clusters, alert.cluster)
  );
}

/**
 * The teams an alert goes to, each with the team it was escalated from (null when it is the
 * team's own). An unacknowledged critical that has been critical for the escalation delay also
 * goes to the escalation team, whatever that team's filters say.
 */
export function routeAlert(teams: readonly Team[], alert: AlertRecord, now: Date): ReadonlyMap<string, string | null> {
  const routes = new Map<string, string | null>();
  for (const team of teams) if (teamWants(team, alert)) routes.set(team.id, null);
  const since = alert.status === 'firing' && alert.severity === 'critical' ? alert.criticalSince : null;
  if (since === null) return routes;
  for (const team of teams) {
    const escalation = team.escalation;
    if (escalation === undefined || routes.get(team.id) !== null) continue;
    const due = since + escalation.afterMs;
    // Once escalated it stays with the second team until it resolves; an ack in time prevents it.
    if (now.getTime() < due || (alert.acknowledged !== null && alert.acknowledged.at <= due)) continue;
    if (!routes.has(escalation.toTeam)) routes.set(escalation.toTeam, team.id);
  }
  return routes;
}
