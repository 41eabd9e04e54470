/**
 * The notifiers of the configured alerting channels (the email channel and one per named webhook),
 * keyed by the channel ids teams refer to. Shared by the watcher and `pgwarden alerts test`, so a
 * test notice travels exactly the way a real one would.
 */
import { createEmailNotifier } from '../alerts/notifiers/email.js';
import { createWebhookNotifier } from '../alerts/notifiers/webhook.js';
import type { SendNotice } from '../alerts/outbox.js';
import { emailChannel, webhookChannel, type AlertingConfig } from '../config/alerting.js';

/** One configured channel and how to send a notice through it. */
export interface ChannelSender {
  /** The channel id: "email" or "webhook:<name>". */
  readonly id: string;
  readonly send: SendNotice;
}

/** The configured channels, in config order (email first), and how to release their connections. */
export interface ChannelSenders {
  readonly channels: readonly ChannelSender[];
  readonly close: () => void;
}

/** What the channels need beyond the config. */
export interface ChannelEnvironment {
  /** Where the SMTP password variable is read (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Told about an email accepted for some recipients but refused for others. */
  readonly onEmailWarning?: (message: string) => void;
}

/** The notifiers of every channel configured in the alerting section. */
export function createChannelSenders(alerting: AlertingConfig, environment: ChannelEnvironment = {}): ChannelSenders {
  const channels: ChannelSender[] = [];
  let closeEmail: (() => void) | undefined;
  if (alerting.email !== undefined) {
    const onWarning = environment.onEmailWarning;
    const email = createEmailNotifier(alerting.email, {
      ...(environment.env === undefined ? {} : { env: environment.env }),
      ...(onWarning === undefined ? {} : { onWarning }),
    });
    closeEmail = email.close;
    channels.push({ id: emailChannel, send: email.send });
  }
  for (const hook of alerting.webhooks) channels.push({ id: webhookChannel(hook.name), send: createWebhookNotifier(hook).send });
  return { channels, close: () => closeEmail?.() };
}
