/**
 * The watcher's heartbeat: a GET on a dead-man's-switch URL (healthchecks.io, Cronitor, an
 * Uptime Kuma push monitor…) after each good round, so that something outside notices a dead
 * watcher; and the optional "pgwarden is alive" notice to every team's channels. Heartbeat URLs
 * carry their token in the path or query, so logs and errors show only the origin.
 */
import { hashText } from '../alerts/grouping.js';
import type { Notice, Team } from '../alerts/types.js';
import { messageOf } from '../errors.js';

/** How long a ping may take. */
export const pingTimeoutMs = 10_000;

/** The URL as logs show it: the origin, with the path and query hidden. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    const hidden = parsed.pathname !== '/' || parsed.search !== '' ? '/***' : '/';
    return `${parsed.origin}${hidden}`;
  } catch {
    return '(invalid URL)';
  }
}

/** GETs the URL; resolves on a 2xx answer, throws with the status or cause (never the URL's secret part) otherwise. */
export async function ping(url: string, timeoutMs = pingTimeoutMs): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, { method: 'GET', headers: { 'user-agent': 'pgwarden' }, signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : messageOf(error);
    const reason = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError') ? `no answer within ${timeoutMs / 1000} s` : cause;
    throw new Error(`${redactUrl(url)}: ${reason.split(url).join(redactUrl(url))}`);
  }
  // The body is not needed; reading it releases the connection.
  await response.arrayBuffer().catch(() => undefined);
  if (!response.ok) throw new Error(`${redactUrl(url)}: HTTP ${response.status} ${response.statusText}`.trimEnd());
}

/** What the alive notice reports. */
export interface AliveFigures {
  readonly clusters: number;
  readonly nodes: number;
  readonly firing: number;
  readonly host: string;
}

/**
 * The "pgwarden is alive" notices of one period, one per team and channel, with ids derived from
 * the team, the channel and the period: a watcher restarted within the period makes the same ids,
 * which the outbox refuses as duplicates.
 */
export function aliveNotices(teams: readonly Team[], figures: AliveFigures, everyMs: number, now: Date): Notice[] {
  const period = Math.floor(now.getTime() / everyMs) * everyMs;
  const summary = `pgwarden is alive: ${figures.clusters} cluster${figures.clusters === 1 ? '' : 's'}, ${figures.firing} alert${figures.firing === 1 ? '' : 's'} firing`;
  return teams.flatMap((team) =>
    team.channels.map((channel): Notice => {
      const threadId = `alive-${hashText(JSON.stringify([team.id, channel]))}`;
      return {
        id: `${threadId}.${period.toString(36)}`,
        channel,
        team: team.id,
        recipients: team.members,
        threadId,
        kind: 'digest',
        severity: 'ok',
        subject: `[ALIVE] ${summary}`,
        body: [
          `${summary}.`,
          `The watcher on ${figures.host} checks ${figures.nodes} node${figures.nodes === 1 ? '' : 's'}; this notice comes every ${formatHours(everyMs)} (alerting.heartbeat.digest_every_h).`,
          'If it stops coming, the watcher is down: see docs/watch.md.',
        ],
        alerts: [],
        suppressedCount: 0,
        createdAt: now,
      };
    }),
  );
}

function formatHours(ms: number): string {
  const hours = ms / 3_600_000;
  return `${hours} hour${hours === 1 ? '' : 's'}`;
}
