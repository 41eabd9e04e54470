/**
 * Switchover, failover and rejoin from the console's Replication view (issue 6 items 3 and 4).
 * Like the backup jobs (src/app/backup-actions.ts), each is the command a DBA would type —
 * `pgwarden switchover|failover|rejoin --config FILE --cluster C …` — run as a child process: the
 * plan shown is what that command prints with --dry-run (the exact SQL and commands, and its
 * refusals), the confirmation is typing the node's (or for a failover the cluster's) name, and
 * the job's stderr lines are the progress. Pure; the runner in backup-actions.ts spawns them.
 */
import type { ClusterConfig } from '../config/types.js';
import { commandLineOf, failureLine, jobKindOf, nextJobPlanId, type BackupJobPlan, type Launcher } from './backup-actions.js';

export type ClusterJobKind = 'switchover' | 'failover' | 'rejoin';

const clusterKinds: ReadonlySet<string> = new Set<ClusterJobKind>(['switchover', 'failover', 'rejoin']);

export function isClusterJob(kind: string): kind is ClusterJobKind {
  return clusterKinds.has(kind);
}

/** What a cluster job's plan depends on. */
export interface ClusterJobSource {
  readonly kind: ClusterJobKind;
  /** The config file the console loaded; undefined under --dsn (cluster commands need the file's nodes). */
  readonly configFile: string | undefined;
  readonly cluster: ClusterConfig | undefined;
  readonly clusterName: string;
  /** The node the console shows (rejoin's target). */
  readonly node: string;
  /** The standby selected in the Replication view (switchover's target). */
  readonly standby: string | undefined;
  readonly readOnly: boolean;
  readonly launcher: Launcher;
}

const what: Readonly<Record<ClusterJobKind, string>> = {
  switchover: 'Planned switchover: with PgBouncer paused, the old primary stops cleanly, the standby replays everything it wrote and is promoted, PgBouncer is pointed at it and resumed; the other standbys follow it and the old primary rejoins as a standby (pg_rewind).',
  failover: 'Failover: the primary is down; the most advanced standby within the lag limit is promoted, PgBouncer is pointed at it, the other standbys follow it. The old primary is fenced and rejoined when it comes back.',
  rejoin: 'Rejoin: the node is stopped (fenced first when it is a second writable primary), rewound with pg_rewind from the primary and started as its standby.',
};

function refused(source: ClusterJobSource, target: string, reason: string): BackupJobPlan {
  const { title, danger } = jobKindOf(source.kind);
  return { id: nextJobPlanId(), kind: source.kind, title, target, danger, steps: [], confirmToken: null, refused: reason, cluster: source.clusterName, args: [], env: {}, commandLine: '', previewArgs: [] };
}

/** Why no cluster job can run from this console, or null. */
function unavailable(source: ClusterJobSource): string | null {
  if (source.configFile === undefined || source.cluster === undefined) return `${source.kind} needs the cluster's nodes from a config file: start the console with --config FILE (docs/failover.md)`;
  if (source.readOnly) return `--read-only: a ${source.kind} changes which node is the primary`;
  if (source.cluster.nodes.length < 2) return `cluster ${source.clusterName} has one node in the config: nothing to ${source.kind === 'rejoin' ? 'rejoin to' : 'promote'}`;
  return null;
}

/** The plan of a cluster job before its dry run: the command line, or why it cannot run. */
export function clusterJobPlan(source: ClusterJobSource): BackupJobPlan {
  const why = unavailable(source);
  const configFile = source.configFile;
  const cluster = source.cluster;
  if (why !== null || configFile === undefined || cluster === undefined) return refused(source, `cluster ${source.clusterName}`, why ?? 'unavailable');
  const common = ['--config', configFile, '--cluster', cluster.name];
  let args: string[];
  let target: string;
  let token: string;
  if (source.kind === 'switchover') {
    const standby = source.standby;
    if (standby === undefined) return refused(source, `cluster ${cluster.name}`, 'select the standby to promote in the standbys list first');
    if (!cluster.nodes.some((node) => node.name === standby)) return refused(source, `standby ${standby}`, `standby ${standby} is not a node of cluster ${cluster.name} in the config (its application_name must be the node's name)`);
    args = ['switchover', ...common, '--to', standby];
    target = `cluster ${cluster.name}: switch over to ${standby}`;
    token = standby;
  } else if (source.kind === 'failover') {
    args = ['failover', ...common];
    target = `cluster ${cluster.name}: fail over to the best standby`;
    token = cluster.name;
  } else {
    if (!cluster.nodes.some((node) => node.name === source.node)) return refused(source, `node ${source.node}`, `node ${source.node} is not in cluster ${cluster.name} of the config`);
    args = ['rejoin', ...common, source.node];
    target = `cluster ${cluster.name}: rejoin ${source.node} as a standby`;
    token = source.node;
  }
  const full = [source.launcher.script, ...args, '--yes'];
  const commandLine = commandLineOf(source.launcher.execPath, full);
  const { title, danger } = jobKindOf(source.kind);
  return {
    id: nextJobPlanId(), kind: source.kind, title, target, danger, confirmToken: token, refused: null, cluster: cluster.name,
    args: full, env: {}, commandLine, previewArgs: [source.launcher.script, ...args, '--dry-run'],
    steps: [
      { command: commandLine, description: what[source.kind] },
      { description: `Progress: its lines in a pane under the tree, with the elapsed time; Esc asks before stopping it.` },
    ],
  };
}

/** The plan after its dry run: the lines it printed as steps, or refused with its reason. */
export function previewSteps(plan: BackupJobPlan, result: { readonly code: number | null; readonly stdout: string; readonly stderr: string }): BackupJobPlan {
  const errLines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  if (result.code !== 0) {
    return { ...plan, steps: [], confirmToken: null, refused: failureLine(errLines) ?? errLines[errLines.length - 1] ?? `its dry run ended with exit ${result.code ?? 'none'}` };
  }
  const printed = result.stdout.split('\n').filter((line) => line.trim() !== '');
  const [command, ...rest] = plan.steps;
  return { ...plan, steps: [...(command === undefined ? [] : [command]), { description: 'Its plan, as the dry run prints it:', detail: printed }, ...rest] };
}
