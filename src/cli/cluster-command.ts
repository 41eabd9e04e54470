/**
 * What the cluster commands share (replica, switchover, failover, rejoin): the cluster named by
 * --cluster (or the config's only one), the signals that interrupt them, and reading the typed
 * confirmation from stdin.
 */
import { createInterface } from 'node:readline';
import type { ClusterConfig, Config } from '../config/types.js';
import { UserError } from '../errors.js';
import { UsageError } from './key-options.js';

/** The signals a cluster command turns into an abort of its current step. */
export const interruptSignals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

/** The cluster `name` of the config; without a name, its only cluster (else a usage error listing them). */
export function clusterOf(config: Config, name: string | undefined): ClusterConfig {
  const names = config.clusters.map((cluster) => cluster.name);
  if (name === undefined) {
    if (config.clusters.length !== 1) throw new UsageError(`${config.source} has ${names.length} clusters: pass --cluster NAME (one of ${names.join(', ')})`);
    return config.clusters[0] as ClusterConfig;
  }
  const cluster = config.clusters.find((candidate) => candidate.name === name);
  if (cluster === undefined) throw new UserError(`${config.source}: no cluster named "${name}"`, `pass --cluster with one of ${names.join(', ')}`);
  return cluster;
}

/** One line from `input` (undefined at its end). */
export function readLine(input: NodeJS.ReadableStream): Promise<string | undefined> {
  return new Promise((resolve) => {
    const lines = createInterface({ input, terminal: false });
    let answered = false;
    lines.once('line', (line) => {
      answered = true;
      lines.close();
      resolve(line);
    });
    lines.once('close', () => {
      if (!answered) resolve(undefined);
    });
  });
}
