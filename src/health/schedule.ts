/**
 * When each cluster's application health (HTTP endpoints, custom SQL) is evaluated, for the
 * watcher and the console's alert engine alike: on the fast cadence, one evaluation in flight per
 * cluster, the consecutive-failure counts kept in the caller's check states under
 * "<cluster>/app".
 */
import type { Evaluation } from '../alerts/types.js';
import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import { applicationNode, evaluateApplication, healthChecksOf } from './application.js';

/** Whether the config declares endpoints or SQL checks for this cluster. */
export function hasHealthChecks(config: Config, cluster: string): boolean {
  const { http, sql } = healthChecksOf(config, cluster);
  return http.length + sql.length > 0;
}

interface ClusterRun {
  lastRun: number | undefined;
  running: Promise<void> | undefined;
}

export interface ApplicationScheduleOptions {
  /** The interval between two evaluations of one cluster (the fast cadence). */
  readonly intervalMs: number;
  /** Slack, so an interval that is a multiple of the caller's tick does not slip by one tick. */
  readonly slackMs: number;
  /** The caller's check states (read at each use: the caller may replace the object); updated in place. */
  readonly states: () => Record<string, unknown>;
  readonly onEvaluation: (evaluation: Evaluation) => void;
  readonly onError: (cluster: string, message: string) => void;
}

export class ApplicationSchedule {
  private readonly clusters = new Map<string, ClusterRun>();

  constructor(private readonly options: ApplicationScheduleOptions) {}

  /** Starts the evaluations that are due. `config()` is read again when one ends (a reload may have removed the cluster's checks). */
  startDue(config: () => Config, now: Date): void {
    for (const cluster of config().clusters) {
      if (!hasHealthChecks(config(), cluster.name)) continue;
      const run = this.clusters.get(cluster.name) ?? { lastRun: undefined, running: undefined };
      this.clusters.set(cluster.name, run);
      if (run.running !== undefined) continue;
      if (run.lastRun !== undefined && now.getTime() - run.lastRun < this.options.intervalMs - this.options.slackMs) continue;
      run.lastRun = now.getTime();
      const key = stateKey(cluster.name);
      run.running = evaluateApplication(config(), cluster.name, now, { previous: this.options.states()[key] })
        .then((outcome) => {
          if (!hasHealthChecks(config(), cluster.name)) return;
          this.options.states()[key] = outcome.state;
          this.options.onEvaluation(outcome.evaluation);
        })
        .catch((error: unknown) => this.options.onError(cluster.name, messageOf(error)))
        .finally(() => {
          run.running = undefined;
        });
    }
  }

  /** Forgets a cluster whose checks were removed (its failure counts start again if they come back). */
  forget(cluster: string): void {
    this.clusters.delete(cluster);
    Reflect.deleteProperty(this.options.states(), stateKey(cluster));
  }

  /** Waits for the evaluations in flight. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.clusters.values()].flatMap((run) => (run.running === undefined ? [] : [run.running])));
  }
}

function stateKey(cluster: string): string {
  return `${cluster}/${applicationNode}`;
}
