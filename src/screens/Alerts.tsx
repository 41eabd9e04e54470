/**
 * Alerts: reserved for the alerting issue. It says what will appear here and which issue brings
 * it, so that the spot is obvious to the user and to whoever fills it in.
 */
import { placeholderScreen, type PlaceholderText } from './common.js';
import type { ScreenModule } from './types.js';

/** The Alerts view's text until the alerting issue replaces this screen. */
export const alertsText: PlaceholderText = {
  heading: 'Alerts: none (alerting not configured yet)',
  lines: [
    'This view arrives with the alerting issue. It will list:',
    '- firing alerts: check, severity, since when, the value against its threshold, and the runbook step',
    '- recently resolved alerts, and silences with their expiry',
    '- the notices sent (email, webhook) and those waiting in the outbox',
  ],
};

/** The Alerts view (a placeholder until the alerting issue). */
export const alertsScreen: ScreenModule = {
  id: 'alerts',
  title: 'Alerts',
  Screen: placeholderScreen(alertsText),
};
