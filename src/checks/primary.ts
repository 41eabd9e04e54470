/**
 * "No primary reachable" (DESIGN §5, restart / role change, critical): a cluster-level finding of
 * the `restart` check, computed from the latest server result of every node of a cluster with
 * several nodes. Pure: the watcher passes the results after each round.
 */
import type { ServerSnapshot } from '../probes/server.js';
import type { ProbeResult } from '../probes/types.js';
import { finding } from './helpers.js';
import type { Finding } from './types.js';

/** The node name of cluster-level alerts (no single node is at fault). */
export const clusterWideNode = '*';

/** The subject of the finding. */
export const noPrimarySubject = 'cluster';

/** One node's latest server probe result (undefined: not evaluated yet). */
export interface NodeServerResult {
  readonly node: string;
  readonly server: ProbeResult<ServerSnapshot> | undefined;
}

/** What the node is, as the message and the context show it. */
function stateOf(server: ProbeResult<ServerSnapshot> | undefined): string {
  if (server === undefined || server.status === 'pending') return 'not evaluated yet';
  if (server.status === 'ok') return server.snapshot.role;
  if (server.status === 'error') return `unreachable (${server.error.message})`;
  return server.unsupported.reason;
}

/**
 * The `restart` finding of subject "cluster": critical when no reachable node is a primary (or no
 * node is reachable), ok when one is. Undefined for a single-node cluster (its connectivity alert
 * says it all) and while a node has not been evaluated yet (no verdict on half the picture).
 */
export function noPrimaryFinding(nodes: readonly NodeServerResult[]): Finding | undefined {
  if (nodes.length < 2) return undefined;
  if (nodes.some((entry) => entry.server === undefined || entry.server.status === 'pending')) return undefined;
  const reachable = nodes.filter((entry) => entry.server?.status === 'ok');
  const primaries = reachable.filter((entry) => entry.server?.status === 'ok' && entry.server.snapshot.role === 'primary');
  const states = nodes.map((entry) => `${entry.node}: ${stateOf(entry.server)}`);
  const details = Object.fromEntries(nodes.map((entry) => [entry.node, stateOf(entry.server)]));
  if (primaries.length > 0) {
    return finding('restart', {
      severity: 'ok', subject: noPrimarySubject, value: primaries.length, threshold: 1, warningThreshold: null, unit: 'count',
      message: `primary: ${primaries.map((entry) => entry.node).join(', ')}`, context: { details },
    });
  }
  return finding('restart', {
    severity: 'critical', subject: noPrimarySubject, value: 0, threshold: 1, warningThreshold: null, unit: 'count',
    message: reachable.length === 0
      ? `no primary reachable: none of the ${nodes.length} nodes answers (${states.join('; ')})`
      : `no primary reachable: ${reachable.length} of ${nodes.length} nodes answer and none is a primary (${states.join('; ')})`,
    context: { details },
  });
}
