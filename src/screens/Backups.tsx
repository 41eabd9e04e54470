/**
 * Backups: reserved for the backup issue. It says what will appear here and which issue brings
 * it, so that the spot is obvious to the user and to whoever fills it in.
 */
import { placeholderScreen, type PlaceholderText } from './common.js';
import type { ScreenModule } from './types.js';

/** The Backups view's text until the backup issue replaces this screen. */
export const backupsText: PlaceholderText = {
  heading: 'Backups: not configured (arrives with the backup issue)',
  lines: [
    'This view arrives with the backup issue. It will list:',
    '- the last good backup, its size and duration, and the next one scheduled',
    '- WAL archiving into the repository, and retention',
    '- verifications and restore drills, with their outcome',
  ],
};

/** The Backups view (a placeholder until the backup issue). */
export const backupsScreen: ScreenModule = {
  id: 'backups',
  title: 'Backups',
  Screen: placeholderScreen(backupsText),
};
