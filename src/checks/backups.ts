/**
 * Backups: the last good backup against its schedule, restorability, verification, the recovery
 * window's continuity, the last drill and the scheduled jobs. The per-node evaluation has nothing
 * to say (a repository belongs to a cluster, not to a node): `pgwarden --watch` reads each
 * cluster's repository catalog and its own job results (src/watch/backup-jobs.ts) and evaluates
 * backupFindings() as a cluster-wide evaluation (node "*"). A cluster without backup settings gets
 * no finding, as the pooler check without a PgBouncer.
 */
import type { BackupPlan } from '../config/backups.js';
import { fullBackupOverdueAt } from '../config/backups.js';
import { formatDuration } from '../format/units.js';
import type { Check, Finding } from './types.js';
import { finding, snapshotOf } from './helpers.js';

/** What the watcher knows of a cluster's backups, from the catalog of its first repository and its jobs. */
export interface BackupStatus {
  /** The repository read ("local /var/lib/pgwarden/repo"). */
  readonly repository: string;
  /** Why the catalog could not be read; the other facts are then unknown. */
  readonly readError: string | null;
  /** The newest restorable backup: its id and when it stopped. */
  readonly lastGood: { readonly id: string; readonly at: string } | null;
  /** The newest backup's last verification, when it has one. */
  readonly lastVerification: { readonly id: string; readonly at: string; readonly ok: boolean; readonly problems: readonly string[] } | null;
  /** windowProblems() of the recovery window (gaps, unrestorable backups…). */
  readonly windowProblems: readonly string[];
  /** The newest drill record, when any. */
  readonly lastDrill: { readonly id: string; readonly at: string; readonly ok: boolean; readonly detail: string } | null;
  /** Scheduled jobs whose last run failed. */
  readonly failedJobs: readonly { readonly job: string; readonly at: string; readonly message: string }[];
}

/** The backups check's findings for one cluster (pure; only problems: absent subjects resolve). */
export function backupFindings(plan: BackupPlan, status: BackupStatus, now: Date): Finding[] {
  const out: Finding[] = [];
  const details = (extra: Readonly<Record<string, string>> = {}): { details: Readonly<Record<string, string>> } => ({ details: { repository: status.repository, ...extra } });
  const critical = (subject: string, message: string, extra: Readonly<Record<string, string>> = {}): void => {
    out.push(finding('backups', { severity: 'critical', subject, value: null, threshold: null, warningThreshold: null, unit: '', message, context: details(extra) }));
  };
  for (const job of status.failedJobs) critical(`job ${job.job}`, `the scheduled ${job.job} job failed at ${job.at}: ${job.message}`, { job: job.job });
  if (status.readError !== null) {
    out.push(finding('backups', { severity: 'unknown', subject: 'repository', value: null, threshold: null, warningThreshold: null, unit: '', message: `cannot read the catalog of ${status.repository}: ${status.readError}`, context: details() }));
    return out;
  }
  if (status.lastGood === null) {
    critical('restorable', `no restorable backup in ${status.repository}: a failure of the primary now loses data for good`);
  } else {
    const overdueAt = fullBackupOverdueAt(plan, new Date(status.lastGood.at));
    if (overdueAt !== undefined && now >= overdueAt) {
      const ageS = Math.round((now.getTime() - Date.parse(status.lastGood.at)) / 1000);
      const limitS = Math.round((overdueAt.getTime() - Date.parse(status.lastGood.at)) / 1000);
      out.push(finding('backups', {
        severity: 'warning', subject: 'age', value: ageS, threshold: limitS, warningThreshold: limitS, unit: 'seconds',
        message: `the last good full backup (${status.lastGood.id}) is ${formatDuration(ageS)} old: the one scheduled after it (${plan.schedule.full ?? 'off'}, ${plan.schedule.timeZone}) plus ${plan.marginMinutes} min margin is missing`,
        context: details({ backup: status.lastGood.id }),
      }));
    }
  }
  if (status.lastVerification !== null && !status.lastVerification.ok) {
    critical('verification', `the verification of backup ${status.lastVerification.id} at ${status.lastVerification.at} failed: ${status.lastVerification.problems.slice(0, 3).join('; ')}`, { problems: status.lastVerification.problems.join('\n') });
  }
  if (status.windowProblems.length > 0) {
    critical('window', `the recovery window is broken: ${status.windowProblems.slice(0, 3).join('; ')}`, { problems: status.windowProblems.join('\n') });
  }
  if (status.lastDrill !== null && !status.lastDrill.ok) {
    critical('drill', `the last restore drill (${status.lastDrill.id}, ${status.lastDrill.at}) failed: ${status.lastDrill.detail}`);
  }
  return out;
}

/** The age of the last good backup, and whether one is restorable and verified. */
export const backupsCheck: Check<Record<string, never>> = {
  id: 'backups',
  title: 'Backups',
  description: 'Whether the cluster has a restorable backup, the last good one is recent enough for its full-backup schedule (plus `margin_minutes`), its verification passed, the recovery window has no gap, the last restore drill passed, and the scheduled backup jobs succeed. Evaluated by `pgwarden --watch` per cluster (node `*`) from the catalog of the cluster\'s first repository under `backups`; a cluster without backup settings gets no finding.',
  cadence: 'normal',
  probes: ['server'],
  defaults: {},
  levels: () => ({
    warning: 'the last good full backup is older than its schedule plus the margin',
    critical: 'no restorable backup, a failed verification, drill or scheduled job, or a gap in the recovery window',
  }),
  evaluate({ results }) {
    // The server probe tells a node that cannot be reached from one without a backup repository.
    const { unknown } = snapshotOf('backups', results, 'server');
    return unknown === undefined ? [] : [unknown];
  },
  runbook: {
    summary: 'The cluster may not be recoverable: there is no recent good backup, none that can be restored, or the last verification failed. Nothing is broken yet, but the next disk failure or mistaken DELETE could lose data for good.',
    steps: [
      'Read the catalog: `pgwarden backups list --config FILE --cluster NAME` shows the backups, the recovery window, its gaps and forks; the alert context names the repository.',
      'A failed job: the watcher log (stderr) has the job\'s own lines; a full repository disk, expired S3 credentials, a WAL archive that stopped (`pgwarden verify` says which segment) or a standby promoted during the backup are the usual causes. Fix it, then back up by hand now: `pgwarden backup --config FILE --cluster NAME --fast`.',
      'A gap in the window or a failed verification: `pgwarden verify --all --config FILE --cluster NAME` names every missing or damaged object. Take a new full backup at once: restores cannot cross a gap, so everything after it needs a backup taken after it.',
      'A failed drill: `pgwarden drill --config FILE --cluster NAME` runs one now and prints each check; docs/drills.md says what each failure means. A backup that does not restore is not a backup.',
      'Escalate when no restorable backup exists: until one does, any failure of the primary loses data.',
    ],
  },
};
