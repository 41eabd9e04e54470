/**
 * The pieces of the Alerts view's prompts that are not drawing: the silence durations offered,
 * the parsing of a typed duration, and the operator commands (src/alerts/commands.ts) a prompt
 * produces. Pure.
 */
import type { AlertCommand } from '../alerts/commands.js';

/** What a silence or an acknowledgement is about: one alert's identity. */
export interface AlertTarget {
  /** The engine's alert key (alertKey(cluster, node, check, subject)). */
  readonly key: string;
  readonly cluster: string;
  readonly node: string;
  readonly checkId: string;
  readonly subject: string;
}

/** The durations the silence prompt offers (up and down cycle through them). */
export const silencePresets: readonly string[] = ['15m', '1h', '4h', '1d'];

/** The duration the silence prompt starts with. */
export const defaultSilenceDuration = '1h';

/** The longest silence the console sets: longer ones are forgotten, not silences. */
export const maxSilenceMs = 30 * 24 * 3600_000;

const unitMs: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** "15m", "1h30m", "2d", "90s", "1.5h" → milliseconds; null when the text is not such a duration. */
export function parseDuration(text: string): number | null {
  const compact = text.trim().toLowerCase().replace(/\s+/g, '');
  if (!/^(\d+(\.\d+)?[smhdw])+$/.test(compact)) return null;
  let total = 0;
  for (const match of compact.matchAll(/(\d+(?:\.\d+)?)([smhdw])/g)) total += Number(match[1]) * (unitMs[match[2] ?? ''] ?? 0);
  return total > 0 ? Math.round(total) : null;
}

/** Why a typed silence duration is refused, or null when it is fine. */
export function durationError(text: string): string | null {
  const ms = parseDuration(text);
  if (ms === null) return `"${text.trim()}" is not a duration: type e.g. 15m, 1h, 4h, 1d or 2h30m`;
  if (ms < 60_000) return 'a silence of less than a minute is over before anyone notices: type at least 1m';
  if (ms > maxSilenceMs) return 'a silence longer than 30 days hides too much: type at most 30d (and fix the check or its thresholds)';
  return null;
}

/** The next preset from the one shown (the first when the text is not a preset). */
export function nextPreset(current: string, step: 1 | -1): string {
  const index = silencePresets.indexOf(current.trim());
  const next = index < 0 ? (step === 1 ? 0 : silencePresets.length - 1) : (index + step + silencePresets.length) % silencePresets.length;
  return silencePresets[next] ?? defaultSilenceDuration;
}

/** The command that silences one alert's check and subject on its node for `durationMs` from now. */
export function silenceCommand(target: AlertTarget, options: { readonly id: string; readonly durationMs: number; readonly comment: string; readonly author: string; readonly now: Date }): AlertCommand {
  const startsAt = options.now.getTime();
  return {
    kind: 'silence',
    silence: {
      id: options.id,
      cluster: target.cluster,
      node: target.node,
      checkId: target.checkId,
      subject: target.subject,
      startsAt,
      endsAt: startsAt + options.durationMs,
      author: options.author,
      comment: options.comment.trim() === '' ? 'silenced from the console' : options.comment.trim(),
    },
  };
}

/** The command that acknowledges one alert, with an optional comment. */
export function acknowledgeCommand(target: AlertTarget, author: string, comment: string): AlertCommand {
  return { kind: 'acknowledge', key: target.key, by: author, comment: comment.trim() };
}
