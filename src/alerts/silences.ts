/**
 * Silences (matchers with an expiry, an author and a comment) and inhibition (a critical mutes the
 * matching warning; instance down mutes the rest of that node). Muted alerts keep their state and
 * still resolve; only their notices are held.
 */
import { globMatch } from './glob.js';
import type { AlertRecord, Silence } from './types.js';

/** The check whose critical alert means the instance is down. */
export const instanceDownCheck = 'connectivity';

/** Adds a silence (replacing one with the same id); an already expired silence is refused. */
export function addSilence(silences: readonly Silence[], silence: Silence, now: Date): readonly Silence[] {
  if (silence.endsAt <= now.getTime()) return silences;
  return [...silences.filter((existing) => existing.id !== silence.id), silence];
}

/** Removes a silence by id. */
export function removeSilence(silences: readonly Silence[], id: string): readonly Silence[] {
  return silences.filter((silence) => silence.id !== id);
}

/** Drops expired silences. */
export function expireSilences(silences: readonly Silence[], now: Date): readonly Silence[] {
  const at = now.getTime();
  const kept = silences.filter((silence) => silence.endsAt > at);
  return kept.length === silences.length ? silences : kept;
}

/** True when every matcher the silence sets matches the alert. */
export function silenceMatches(silence: Silence, alert: Pick<AlertRecord, 'cluster' | 'node' | 'checkId' | 'subject'>): boolean {
  return (
    (silence.cluster === undefined || globMatch(silence.cluster, alert.cluster)) &&
    (silence.node === undefined || globMatch(silence.node, alert.node)) &&
    (silence.checkId === undefined || globMatch(silence.checkId, alert.checkId)) &&
    (silence.subject === undefined || globMatch(silence.subject, alert.subject))
  );
}

/** The active silence that covers the alert, if any. */
export function activeSilence(silences: readonly Silence[], alert: AlertRecord, now: Date): Silence | undefined {
  const at = now.getTime();
  return silences.find((silence) => silence.startsAt <= at && at < silence.endsAt && silenceMatches(silence, alert));
}

function active(alert: AlertRecord): boolean {
  return alert.status === 'firing';
}

/**
 * Why the alert is inhibited, or null. A firing critical mutes the warning of the same cluster,
 * check and subject on another node (the same alert cannot hold both severities); a firing
 * critical `connectivity` alert mutes every other alert of its cluster and node.
 */
export function inhibitedBy(alerts: Readonly<Record<string, AlertRecord>>, alert: AlertRecord): string | null {
  for (const other of Object.values(alerts)) {
    if (other.key === alert.key || !active(other) || other.severity !== 'critical') continue;
    if (other.checkId === instanceDownCheck && other.cluster === alert.cluster && other.node === alert.node) {
      return `instance ${alert.cluster}/${alert.node} is down`;
    }
    if (
      (alert.severity === 'warning' || alert.severity === 'info') &&
      other.cluster === alert.cluster &&
      other.checkId === alert.checkId &&
      other.subject === alert.subject
    ) {
      return `critical ${other.checkId} on ${other.node}`;
    }
  }
  return null;
}
