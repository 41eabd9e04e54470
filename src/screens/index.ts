/** Every view's screen, in one explicit list (no self-registration). */
import type { ViewId } from '../app/state.js';
import { activityScreen } from './Activity.js';
import { alertsScreen } from './Alerts.js';
import { backupsScreen } from './Backups.js';
import { helpScreen } from './Help.js';
import { locksScreen } from './Locks.js';
import { overviewScreen } from './Overview.js';
import { poolScreen } from './Pool.js';
import { queriesScreen } from './Queries.js';
import { replicationScreen } from './Replication.js';
import { tablesScreen } from './Tables.js';
import type { ScreenModule } from './types.js';

/** The screen of each view. */
export const screens: Readonly<Record<ViewId, ScreenModule>> = {
  overview: overviewScreen,
  activity: activityScreen,
  pool: poolScreen,
  locks: locksScreen,
  tables: tablesScreen,
  replication: replicationScreen,
  queries: queriesScreen,
  alerts: alertsScreen,
  backups: backupsScreen,
  help: helpScreen,
};
