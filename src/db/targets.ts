/** Opening the connections for one node of one configured cluster. */
import type { Config } from '../config/types.js';
import { UserError } from '../errors.js';
import { PgNode } from './node.js';
import { PgBouncerAdmin } from './pgbouncer.js';

export interface OpenTargets {
  readonly clusterName: string;
  readonly nodeName: string;
  readonly server: PgNode;
  readonly pgbouncer: PgBouncerAdmin | undefined;
  close(): Promise<void>;
}

/** Picks the cluster and node (the first of each unless named) and opens their pools. */
export function openTargets(config: Config, choice: { cluster?: string | undefined; node?: string | undefined } = {}): OpenTargets {
  const cluster = choice.cluster === undefined ? config.clusters[0] : config.clusters.find((c) => c.name === choice.cluster);
  if (cluster === undefined) {
    throw new UserError(
      `no cluster named "${choice.cluster ?? ''}" in ${config.source}`,
      `known clusters: ${config.clusters.map((c) => c.name).join(', ') || '(none)'}`,
    );
  }
  const node = choice.node === undefined ? cluster.nodes[0] : cluster.nodes.find((n) => n.name === choice.node);
  if (node === undefined) {
    throw new UserError(`no node named "${choice.node ?? ''}" in cluster "${cluster.name}"`, `known nodes: ${cluster.nodes.map((n) => n.name).join(', ')}`);
  }
  const server = new PgNode(node.connection, { statementTimeoutMs: config.statementTimeoutMs, lockTimeoutMs: config.lockTimeoutMs });
  const pgbouncer = cluster.pgbouncer === undefined ? undefined : new PgBouncerAdmin(cluster.pgbouncer.connection);
  return {
    clusterName: cluster.name,
    nodeName: node.name,
    server,
    pgbouncer,
    async close() {
      await Promise.allSettled([server.close(), pgbouncer?.close()]);
    },
  };
}
