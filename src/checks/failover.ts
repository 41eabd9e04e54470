/**
 * The `failover` check: the steps of an automatic failover and of the automatic fencing of an old
 * primary (issue 6 item 5), raised by `pgwarden --watch` as critical alerts of the cluster-wide node
 * "*". The automatic-failover loop (src/watch/auto-failover.ts) decides and acts; this module only
 * says how its steps look as findings. Per node there is nothing to say but whether the server
 * probe works, as for split-brain.
 */
import { finding, snapshotOf } from './helpers.js';
import type { Check, Finding } from './types.js';

export const failoverCheckId = 'failover';

/** The subjects of the findings, one alert each. */
export const failoverSubjects = {
  /** The primary was declared lost. */
  lost: 'primary lost',
  /** Which standby is being promoted. */
  promotion: 'promotion',
  /** Done, failed or refused: the end of one automatic failover; it holds the cluster off until acknowledged. */
  outcome: 'outcome',
  /** An old primary found writable and fenced, then rejoined (or not). */
  fencing: (node: string): string => `fencing ${node}`,
} as const;

/** A critical finding of one step. */
export function failoverFinding(subject: string, message: string, details: Readonly<Record<string, string | number | null>> = {}): Finding {
  return finding(failoverCheckId, { severity: 'critical', subject, value: null, threshold: null, warningThreshold: null, unit: '', message, context: { details } });
}

export const failoverCheck: Check<Record<string, never>> = {
  id: failoverCheckId,
  title: 'Automatic failover',
  description:
    'The steps of an automatic failover run by `pgwarden --watch` for a cluster with `failover.automatic` on (docs/failover.md "Automatic failover"), each a critical alert of the cluster-wide node `*`: "primary lost" (declared lost, with why), "promotion" (which standby, its timeline and lag), "outcome" (done, failed with the state it left, or refused), and "fencing <node>" (an old primary that came back writable, fenced and rejoined as a standby, or what failed). They stay critical until acknowledged (`pgwarden alerts ack`) or for an hour; while "outcome" is, no second automatic failover runs for that cluster.',
  cadence: 'fast',
  probes: ['server'],
  defaults: {},
  levels: () => ({ warning: 'never (each step is critical)', critical: 'an automatic failover or fencing step ran: declared lost, promoting, done, failed, refused, fenced' }),
  evaluate({ results }) {
    const { unknown } = snapshotOf(failoverCheckId, results, 'server');
    return unknown === undefined ? [] : [unknown];
  },
  runbook: {
    summary: 'pgwarden --watch failed the cluster over on its own (or tried to, or fenced an old primary that came back). The primary changed: clients through PgBouncer reach the new one; anything that connects to the old primary directly does not. No second automatic failover runs for this cluster until you acknowledge the "outcome" alert (or for an hour).',
    steps: [
      'Look: the alerts\' messages name the old primary, the promoted standby, its timeline and how long it took; `pgwarden --watch` logged every step. Check the new primary: `select pg_is_in_recovery(), pg_current_wal_lsn();` (false: it takes writes) and the Replication view (the other standbys follow it).',
      'If the outcome says "failed", read the state it left in the message (for example "s1 IS the new primary … PgBouncer could not be pointed at it") and finish by hand as it says; `pgwarden failover --config FILE` shows the plan again. If it says "refused", nothing was changed: decide with docs/failover.md "Failover".',
      'Find out why the old primary died (host, disk, server log) before it comes back. When it restarts writable, the watcher fences it (stops it, or makes it read-only when remote) and rejoins it as a standby with pg_rewind; or do it yourself: `pgwarden rejoin NODE --config FILE`.',
      'Acknowledge the "outcome" alert (`pgwarden alerts list`, then `pgwarden alerts ack <id>`) once the cluster is sound again: that re-arms automatic failover for the cluster.',
      'Escalate to the application owners when the failover was asynchronous or a standby lagged: the transactions the new primary lacks are lost (the "promotion" alert gives its lag).',
    ],
  },
};

/** Whether a finding is one of the cluster-wide step findings (not the per-node UNKNOWN). */
export function isStepFinding(found: Finding): boolean {
  return found.checkId === failoverCheckId && found.severity === 'critical';
}
