/**
 * The `monitor` check: the watcher's own health (DESIGN §5, "the monitor itself"). It reads no
 * probe: the watcher describes what it saw (a failed reload, a state directory it cannot write, an
 * outbox that keeps failing, an evaluation that overran its interval, its own loop stalling, a
 * heartbeat URL that does not answer) and monitorFindings() turns that into findings, evaluated each
 * clock tick under the cluster "pgwarden" and the watcher's host name as node.
 */
import { formatDuration } from '../format/units.js';
import { finding } from './helpers.js';
import type { Check, Finding } from './types.js';

/** The cluster name of the watcher's own alerts. */
export const monitorCluster = 'pgwarden';

/**
 * outboxFailingSeconds: an outbox whose oldest pending notice has been failing this long is a
 * warning (15 min); lateTicks: a clock tick this many intervals late means the loop stalled
 * (process suspended, event loop blocked); stallHoldSeconds: how long the heartbeat alert stays
 * critical after a stall, so that it fires and is seen.
 */
export type MonitorThresholds = {
  readonly outboxFailingSeconds: number;
  readonly lateTicks: number;
  readonly stallHoldSeconds: number;
};

/** One channel's outbox as the watcher last saw it. */
export interface OutboxStatus {
  readonly channel: string;
  /** When the oldest pending notice first failed (ms since epoch); null when nothing is failing. */
  readonly failingSince: number | null;
  /** A notice has been failing longer than the outbox's stale limit. */
  readonly stale: boolean;
  readonly lastError: string | null;
}

/** One node's evaluation as the watcher last saw it. */
export interface EvaluationStatus {
  readonly cluster: string;
  readonly node: string;
  /** When the evaluation in flight started (ms since epoch); null when none is running. */
  readonly runningSince: number | null;
  /** The interval it must finish within (its shortest due cadence). */
  readonly intervalMs: number;
  /** Why the last evaluation could not run at all; null when it ran. */
  readonly error: string | null;
}

/** A clock tick that came late. */
export interface Stall {
  readonly at: number;
  readonly lateMs: number;
  readonly tickMs: number;
}

/** What the watcher knows about itself at one tick. */
export interface MonitorStatus {
  /** The error of the last reload when it failed; null when the running config is the file's. */
  readonly reloadError: string | null;
  /** Why the state could not be saved last time; null when it was. */
  readonly stateDirError: string | null;
  readonly outboxes: readonly OutboxStatus[];
  readonly evaluations: readonly EvaluationStatus[];
  /** The last stall of the loop, if any. */
  readonly lastStall: Stall | null;
  /** Why the last heartbeat ping failed; null when it worked or no heartbeat URL is configured. */
  readonly pingError: string | null;
}

const seconds = (n: number): string => formatDuration(n);

/** Subject of each kind of finding. */
export const monitorSubjects = {
  reload: 'config reload',
  stateDir: 'state directory',
  heartbeat: 'heartbeat',
  ping: 'heartbeat ping',
  outbox: (channel: string): string => `outbox ${channel}`,
  evaluation: (cluster: string, node: string): string => `evaluation ${cluster}/${node}`,
} as const;

/** The findings of the monitor check: one per subject, ok when healthy, so a recovered subject resolves. */
export function monitorFindings(status: MonitorStatus, thresholds: MonitorThresholds, now: Date): Finding[] {
  const at = now.getTime();
  const findings: Finding[] = [];
  const warnIf = (subject: string, problem: string | null, healthy: string, details?: Readonly<Record<string, string | number | null>>): void => {
    findings.push(finding('monitor', {
      severity: problem === null ? 'ok' : 'warning', subject, value: null, threshold: null, warningThreshold: null, unit: '',
      message: problem ?? healthy, ...(details === undefined ? {} : { context: { details } }),
    }));
  };
  warnIf(monitorSubjects.reload, status.reloadError === null ? null : `the config file could not be reloaded; the previous config keeps running: ${status.reloadError}`, 'the running config is the file\'s');
  warnIf(monitorSubjects.stateDir, status.stateDirError === null ? null : `the state cannot be saved: ${status.stateDirError}`, 'the state is saved after every step');
  for (const outbox of status.outboxes) {
    const failingFor = outbox.failingSince === null ? null : Math.max(0, (at - outbox.failingSince) / 1000);
    const failing = failingFor !== null && failingFor > thresholds.outboxFailingSeconds;
    const problem = outbox.stale
      ? `notices on ${outbox.channel} have been failing for more than a day (stale): ${outbox.lastError ?? 'no error recorded'}`
      : failing
        ? `notices on ${outbox.channel} have been failing for ${seconds(failingFor)} (warning > ${seconds(thresholds.outboxFailingSeconds)}): ${outbox.lastError ?? 'no error recorded'}`
        : null;
    findings.push(finding('monitor', {
      severity: problem === null ? 'ok' : 'warning', subject: monitorSubjects.outbox(outbox.channel), value: failingFor, threshold: thresholds.outboxFailingSeconds,
      warningThreshold: thresholds.outboxFailingSeconds, unit: 'seconds',
      message: problem ?? (failingFor === null ? `${outbox.channel} delivers` : `${outbox.channel} failing for ${seconds(failingFor)}, retried`),
    }));
  }
  for (const evaluation of status.evaluations) {
    const subject = monitorSubjects.evaluation(evaluation.cluster, evaluation.node);
    const runningFor = evaluation.runningSince === null ? null : Math.max(0, (at - evaluation.runningSince) / 1000);
    const overdue = runningFor !== null && runningFor * 1000 > evaluation.intervalMs;
    const problem = overdue
      ? `the evaluation of ${evaluation.cluster}/${evaluation.node} has been running for ${seconds(runningFor)}, longer than its interval of ${seconds(evaluation.intervalMs / 1000)}: checks of this node are late`
      : evaluation.error === null ? null : `the checks of ${evaluation.cluster}/${evaluation.node} could not run: ${evaluation.error}`;
    findings.push(finding('monitor', {
      severity: problem === null ? 'ok' : 'warning', subject, value: runningFor, threshold: evaluation.intervalMs / 1000, warningThreshold: evaluation.intervalMs / 1000, unit: 'seconds',
      message: problem ?? `${evaluation.cluster}/${evaluation.node} is evaluated on time`,
    }));
  }
  const stall = status.lastStall;
  const stalled = stall !== null && at - stall.at < thresholds.stallHoldSeconds * 1000;
  findings.push(finding('monitor', {
    severity: stalled ? 'critical' : 'ok', subject: monitorSubjects.heartbeat, value: stall === null ? null : stall.lateMs / 1000,
    threshold: stall === null ? null : (thresholds.lateTicks * stall.tickMs) / 1000, warningThreshold: null, unit: 'seconds',
    message: stalled
      ? `the watcher's loop stalled: a clock tick came ${seconds(stall.lateMs / 1000)} late at ${new Date(stall.at).toISOString()} (critical > ${thresholds.lateTicks} intervals of ${seconds(stall.tickMs / 1000)}); evaluations and notices were held meanwhile`
      : 'the watcher\'s loop runs on time',
  }));
  warnIf(monitorSubjects.ping, status.pingError === null ? null : `the heartbeat URL did not take the ping: ${status.pingError}; the external dead-man's switch may raise an alarm`, 'the heartbeat URL takes the pings');
  return findings;
}

/**
 * The catalogue entry. It reads no probe, so evaluate() on probe results reports nothing (`alerts
 * check` has no watcher to describe); the watcher evaluates monitorFindings() instead.
 */
export const monitorCheck: Check<MonitorThresholds> = {
  id: 'monitor',
  title: 'The monitor itself',
  description:
    'The watcher\'s own health, evaluated on every clock tick under the cluster "pgwarden" with the watcher\'s host name as node. Subjects: "config reload" (SIGHUP found an invalid file), "state directory" (not writable), "outbox <channel>" (notices failing too long, or stale), "evaluation <cluster>/<node>" (a node\'s checks overran their interval or could not run), "heartbeat" (the watcher\'s loop stalled) and "heartbeat ping" (the heartbeat URL did not answer). Teams receive them like any other check, e.g. with "checks": ["monitor"].',
  cadence: 'fast',
  probes: [],
  defaults: { outboxFailingSeconds: 900, lateTicks: 10, stallHoldSeconds: 600 },
  levels: (t) => ({
    warning: `a check could not run or overran its interval, the config reload failed, the state directory is not writable, an outbox has been failing for ${seconds(t.outboxFailingSeconds)} (or is stale), or the heartbeat URL failed`,
    critical: `heartbeat missed: a clock tick of the watcher came more than ${t.lateTicks} intervals late (reported for ${seconds(t.stallHoldSeconds)})`,
  }),
  evaluate: () => [],
  runbook: {
    summary: 'pgwarden\'s watcher cannot do its job fully: alerts may be late, missing or undelivered. The message names what is wrong; the watcher keeps running with what still works.',
    steps: [
      'Read the watcher\'s log: `journalctl -u pgwarden -n 200` (or its stderr). Every monitor alert has a matching log line with the file, key, channel or node involved.',
      '"config reload": fix the file the message names (key and fix are given), check it with `pgwarden --config FILE config`, then `systemctl reload pgwarden`. The previous config runs until then.',
      '"state directory": check that the directory exists, is writable by the service user and that its disk is not full (`df -h`, `ls -ld`); without it a restart would resend notices.',
      '"outbox <channel>": test the channel with `pgwarden alerts test`; for email look at the SMTP server and credentials, for a webhook at its URL. Pending notices are kept and sent once the channel works.',
      '"evaluation <cluster>/<node>": the node answers too slowly or the watcher host is overloaded; look at the node\'s connectivity alert and the host load. "heartbeat": the process was suspended or the host froze; check `journalctl -k` and the VM\'s history. Escalate when it repeats.',
    ],
  },
};
