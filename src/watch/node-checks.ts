/**
 * Evaluating the checks of one node, shared by `pgwarden --watch` and the console's alert engine:
 * which cadences are due, the thresholds of a cluster, running the checks on one refresh of the
 * probes (keeping each check's state between evaluations), and the evaluation of a node whose
 * entry is broken. The callers own the timers, the runners and what happens to the evaluation.
 */
import type { Evaluation } from '../alerts/types.js';
import { checks as catalogue, resolveThresholds } from '../checks/catalogue.js';
import { unknownFinding } from '../checks/helpers.js';
import type { Cadence, Check, Finding, Thresholds } from '../checks/types.js';
import { thresholdOverridesFor } from '../config/alerting.js';
import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import type { Results } from '../probes/runner.js';

const cadences: readonly Cadence[] = ['fast', 'normal', 'slow'];

/** The cadences due at `now`, given when each last ran. */
export function dueCadences(lastRun: ReadonlyMap<Cadence, number>, intervals: Readonly<Record<Cadence, number>>, now: number, tickMs: number): Cadence[] {
  return cadences.filter((cadence) => {
    const last = lastRun.get(cadence);
    // Half a tick of slack: a cadence that is a multiple of the tick must not slip by one tick.
    return last === undefined || now - last >= intervals[cadence] - tickMs / 2;
  });
}

/** Every check's thresholds on this cluster: the defaults with the config's overrides ("*", then the cluster's own). */
export function clusterThresholds(config: Config, cluster: string): Map<string, Thresholds> {
  const thresholds = new Map<string, Thresholds>();
  for (const check of catalogue) thresholds.set(check.id, resolveThresholds(check, thresholdOverridesFor(config.alerting, cluster, check.id)));
  return thresholds;
}

/**
 * The checks to run on this refresh: a server that does not answer fails every check the same
 * way, so connectivity alone reports it and the other alerts stay as they are (the engine mutes
 * them while the instance is down).
 */
export function checksToRun(selected: readonly Check[], results: Results): readonly Check[] {
  return results.get('server')?.status === 'error' ? catalogue.filter((check) => check.id === 'connectivity') : selected;
}

/**
 * Runs the checks on one refresh. `states` holds each check's nextState() under
 * "<cluster>/<node>/<check id>" and is updated in place. A check that throws is a bug, but the
 * others are still evaluated: it reports UNKNOWN with the error.
 */
export function runChecks(
  node: { readonly cluster: string; readonly node: string },
  run: readonly Check[],
  results: Results,
  thresholds: ReadonlyMap<string, Thresholds>,
  states: Record<string, unknown>,
  now: Date,
): Finding[] {
  return run.flatMap((check) => {
    const key = `${node.cluster}/${node.node}/${check.id}`;
    const input = { results, thresholds: thresholds.get(check.id) ?? check.defaults, now, previous: states[key] };
    try {
      const findings = check.evaluate(input);
      if (check.nextState !== undefined) states[key] = check.nextState(input);
      return findings;
    } catch (error) {
      return [unknownFinding(check.id, messageOf(error))];
    }
  });
}

/** The evaluation of a node whose entry cannot even be opened: a critical connectivity finding. */
export function brokenNodeEvaluation(cluster: string, node: string, reason: string | undefined): Evaluation {
  return {
    cluster, node, checks: ['connectivity'],
    findings: [{
      checkId: 'connectivity', severity: 'critical', subject: 'cluster', value: null, threshold: null, unit: 'seconds',
      message: `the node cannot be watched: ${reason ?? 'unknown reason'}`, context: {}, runbook: 'docs/alerts.md#connectivity',
    }],
  };
}
