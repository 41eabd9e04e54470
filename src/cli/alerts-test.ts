/**
 * `pgwarden alerts test`: sends a [TEST] notice through every configured channel, to every team
 * that uses it, directly (not through the outbox: nothing is queued or retried) and reports each
 * result on one line. Exit 0 when every send succeeded, 1 when one failed, 2 when there is nothing
 * to test. Lines name the channel, the recipients or the webhook's origin, never a secret.
 */
import { testNotices } from '../alerts/engine.js';
import type { Notice } from '../alerts/types.js';
import { emailChannel, webhookChannel } from '../config/alerting.js';
import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import { createChannelSenders } from '../watch/channels.js';
import type { CommandOutput } from './show.js';

export interface AlertsTestOptions {
  /** Where the SMTP password variable is read (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  readonly now?: Date | undefined;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** The webhook's origin only: a path or query often carries the token. */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/** Sends one test notice per team and channel and prints one line for each; see the file comment for the exit codes. */
export async function alertsTest(config: Config, options: AlertsTestOptions = {}): Promise<CommandOutput> {
  const { alerting } = config;
  if (alerting.email === undefined && alerting.webhooks.length === 0) {
    return {
      stdout: '',
      stderr: 'pgwarden: no alerting channel is configured: add alerting.email or alerting.webhooks, and a team in alerting.teams that uses it (docs/alerts.md)\n',
      exitCode: 2,
    };
  }
  const notices = testNotices(alerting.teams, options.now ?? new Date());
  if (notices.length === 0) {
    return {
      stdout: '',
      stderr: 'pgwarden: no team uses a channel, so there is no one to send a test notice to: add a team in alerting.teams with email addresses or webhooks (docs/alerts.md)\n',
      exitCode: 2,
    };
  }
  // Refused recipients do not fail the send (a retry would duplicate the accepted ones), but a test must say so.
  let warnings: string[] = [];
  const senders = createChannelSenders(alerting, { env: options.env, onEmailWarning: (message) => warnings.push(message) });
  const hooks = new Map(alerting.webhooks.map((hook) => [webhookChannel(hook.name), origin(hook.url)]));
  const target = (notice: Notice): string => (notice.channel === emailChannel ? notice.recipients.join(', ') : (hooks.get(notice.channel) ?? notice.channel));
  const lines: string[] = [];
  let failed = 0;
  try {
    for (const channel of senders.channels) {
      const mine = notices.filter((notice) => notice.channel === channel.id);
      if (mine.length === 0) lines.push(`--   ${channel.id} → no team uses this channel: not tested`);
      for (const notice of mine) {
        const to = target(notice);
        warnings = [];
        try {
          await channel.send(notice);
          if (warnings.length > 0) {
            failed += 1;
            lines.push(`FAIL ${channel.id} → ${to} (team ${notice.team}): ${oneLine(warnings.join('; '))}`);
          } else {
            const how = channel.id === emailChannel && alerting.email !== undefined ? `accepted by ${alerting.email.host}:${alerting.email.port}` : 'accepted';
            lines.push(`ok   ${channel.id} → ${to} (team ${notice.team}, ${how})`);
          }
        } catch (error) {
          failed += 1;
          // The webhook notifier starts its message with the origin, which the line already shows.
          const message = oneLine(messageOf(error)).replace(/^webhook [^ ]+: /, '');
          lines.push(`FAIL ${channel.id} → ${to} (team ${notice.team}): ${message}`);
        }
      }
    }
    // A team's channel that is not configured cannot happen with a validated config, but must not pass silently.
    const known = new Set(senders.channels.map((channel) => channel.id));
    for (const notice of notices.filter((item) => !known.has(item.channel))) {
      failed += 1;
      lines.push(`FAIL ${notice.channel} → (team ${notice.team}): this channel is not configured`);
    }
  } finally {
    senders.close();
  }
  const sent = notices.length - failed;
  const summary = failed === 0 ? `${sent} test notice(s) sent` : `${failed} of ${notices.length} test notice(s) failed`;
  return { stdout: `${[...lines, summary].join('\n')}\n`, stderr: '', exitCode: failed === 0 ? 0 : 1 };
}
