/**
 * The webhook channel: a JSON POST of the notice, or a Slack-compatible payload. Webhook URLs
 * often carry their secret in the path (Slack's do), so errors name only the origin.
 */
import type { Notice } from '../types.js';
import { alertBlocks, blocksToText } from './render.js';
import type { RenderOptions } from './render.js';

export interface WebhookConfig {
  readonly url: string;
  /** json (default): the notice itself; slack: `{ text, blocks }` for an incoming webhook. */
  readonly format?: 'json' | 'slack';
  /** Whole-request timeout (default 10 s). */
  readonly timeoutMs?: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly runbookBaseUrl?: string;
}

export interface WebhookNotifier {
  readonly send: (notice: Notice) => Promise<void>;
}

export interface SlackPayload {
  readonly text: string;
  readonly blocks: readonly object[];
}

// Slack refuses section text above 3000 characters and messages above 50 blocks.
const slackSectionLimit = 2900;
const slackBlockLimit = 48;

function truncate(value: string, limit: number): string {
  return value.length <= limit ? value : `${value.slice(0, limit - 1)}…`;
}

/** Slack mrkdwn treats these three characters specially; everything else passes. */
function slackEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A Slack incoming-webhook payload: the subject as fallback text, one section per alert. */
export function slackPayload(notice: Notice, options: RenderOptions = {}): SlackPayload {
  const sections: string[] = [];
  if (notice.suppressedCount > 0) sections.push(`${notice.suppressedCount} notice${notice.suppressedCount === 1 ? '' : 's'} suppressed`);
  if (notice.alerts.length === 0) sections.push(notice.body.join('\n'));
  for (const alert of notice.alerts) sections.push(blocksToText(alertBlocks(alert, options)).trimEnd());
  const blocks: object[] = [{ type: 'header', text: { type: 'plain_text', text: truncate(notice.subject, 150) } }];
  for (const section of sections.slice(0, slackBlockLimit)) {
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: truncate(`\`\`\`${slackEscape(section)}\`\`\``, slackSectionLimit) } });
  }
  if (sections.length > slackBlockLimit) blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `${sections.length - slackBlockLimit} more not shown` }] });
  return { text: slackEscape(notice.subject), blocks };
}

/** The JSON body of a plain webhook: the notice with its date as ISO text. */
export function webhookPayload(notice: Notice): object {
  return { ...notice, createdAt: notice.createdAt.toISOString() };
}

function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/** A webhook channel; send() resolves on a 2xx answer and throws with the status otherwise. */
export function createWebhookNotifier(config: WebhookConfig): WebhookNotifier {
  const where = origin(config.url);
  const timeoutMs = config.timeoutMs ?? 10_000;
  const renderOptions: RenderOptions = config.runbookBaseUrl !== undefined ? { runbookBaseUrl: config.runbookBaseUrl } : {};
  return {
    send: async (notice) => {
      const body = JSON.stringify(config.format === 'slack' ? slackPayload(notice, renderOptions) : webhookPayload(notice));
      let response: Response;
      try {
        response = await fetch(config.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'pgwarden', ...config.headers },
          body,
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (error) {
        const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
        const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : error instanceof Error ? error.message : String(error);
        throw new Error(timedOut ? `webhook ${where}: no answer within ${timeoutMs} ms` : `webhook ${where}: ${cause}`);
      }
      // Drain the body so the connection is released; a few hundred characters explain a refusal.
      const answer = await response.text().catch(() => '');
      if (!response.ok) {
        const detail = answer.trim() === '' ? '' : `: ${truncate(answer.trim().replace(/\s+/g, ' '), 200)}`;
        throw new Error(`webhook ${where}: HTTP ${response.status} ${response.statusText}${detail}`);
      }
    },
  };
}
