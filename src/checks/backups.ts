/**
 * Backups: the last good backup against its schedule, restorability and verification. Backups are
 * not built yet (`pgwarden backup`, issue 5): until a cluster has a backup repository the check has
 * nothing to evaluate and reports no finding (as the pooler check does without a PgBouncer), rather
 * than an UNKNOWN alert on every cluster of every watcher.
 */
import type { Check } from './types.js';
import { snapshotOf } from './helpers.js';

/** The age of the last good backup, and whether one is restorable and verified. */
export const backupsCheck: Check<Record<string, never>> = {
  id: 'backups',
  title: 'Backups',
  description: 'Whether the cluster has a restorable backup, the last good one is recent enough for its schedule, and its verification passed. Until pgwarden manages backups (`pgwarden backup`), no repository can be configured and the check reports nothing (like the pooler check without a PgBouncer); monitor your existing backup tool meanwhile.',
  cadence: 'normal',
  probes: ['server'],
  defaults: {},
  levels: () => ({
    warning: 'the last good backup is older than its schedule plus a margin',
    critical: 'no restorable backup, or a failed verification',
  }),
  evaluate({ results }) {
    // The server probe tells a node that cannot be reached from one without a backup repository.
    const { unknown } = snapshotOf('backups', results, 'server');
    return unknown === undefined ? [] : [unknown];
  },
  runbook: {
    summary: 'The cluster may not be recoverable: there is no recent good backup, none that can be restored, or the last verification failed. Nothing is broken yet, but the next disk failure or mistaken DELETE could lose data for good.',
    steps: [
      'Look at the backup tool\'s catalog (`pgbackrest info`, `barman list-backup <server>`, or the directory of your pg_basebackup jobs): the date of the last successful backup and whether WAL archiving is continuous since (see wal-archiving).',
      'If the last backup failed, read its log: a full disk in the repository, an expired credential, a timeout, or a standby promoted during the backup are the usual causes. Fix it and start a backup by hand now.',
      'Verify the newest backup: `pg_verifybackup <dir>` for a plain-format backup (PostgreSQL 13+), or the tool\'s own check (`pgbackrest verify`). A verification does not replace a test restore: restore to a scratch host regularly.',
      'Escalate when no restorable backup exists: until one does, any failure of the primary loses data.',
    ],
  },
};
