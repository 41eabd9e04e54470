/**
 * The console's topology monitor (issue 6 item 1). The console's runner probes one node, but a
 * topology needs every node's own view: for the console's cluster, when it has several nodes, this
 * runs the server and replication probes on every node, on connections of its own, and publishes
 * the topology (src/cluster/topology.ts) after each node's refresh. The server probe runs as often
 * as the replication probe here, so a promotion's new role and timeline show together.
 * Everything runs on timers and promises, never inside a render.
 */
import { buildTopology, type NodeObservation, type TopologyView } from '../cluster/topology.js';
import type { ClusterConfig, Config, ProbeSettings } from '../config/types.js';
import { openTargets, type OpenTargets } from '../db/targets.js';
import { messageOf } from '../errors.js';
import { replicationProbe, type ReplicationSnapshot } from '../probes/replication.js';
import { ProbeRunner, type AnyProbe } from '../probes/runner.js';
import { serverProbe, type ServerSnapshot } from '../probes/server.js';
import type { ProbeResult } from '../probes/types.js';

/** The topology monitor as the console shell uses it (the real one below; tests may give their own). */
export interface TopologyDesk {
  /** The topology of the console's cluster now; undefined for a cluster of one node (the Replication view's own probe says it all). */
  view(): TopologyView | undefined;
  /** Called whenever the view changes. Returns the unsubscribe function. */
  subscribe(listener: (view: TopologyView | undefined) => void): () => void;
  /** Follows the console to another cluster: the previous cluster's connections are closed. */
  select(cluster: string): void;
  /** The console's pause key: no probe runs while paused (the last view stays). */
  setPaused(paused: boolean): void;
  /** Stops every runner and closes every connection. */
  close(): Promise<void>;
}

export interface TopologyMonitorOptions {
  readonly config: Config;
  /** The cluster shown first. */
  readonly cluster: string;
  /** How soon after a node's refresh the view is published: refreshes of several nodes arriving together make one render. */
  readonly coalesceMs?: number;
}

interface NodeProbes {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly targets: OpenTargets | undefined;
  readonly runner: ProbeRunner | undefined;
  /** Why the node could not even be opened. */
  readonly brokenReason: string | undefined;
}

const probes: readonly AnyProbe[] = [serverProbe, replicationProbe] as readonly AnyProbe[];

class ConsoleTopology implements TopologyDesk {
  private readonly listeners = new Set<(view: TopologyView | undefined) => void>();
  private nodes: NodeProbes[] = [];
  private cluster: ClusterConfig | undefined;
  private current: TopologyView | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private paused = false;
  private readonly coalesceMs: number;
  /** Runners being stopped by select() or close(), awaited by close(). */
  private stopping: Promise<unknown>[] = [];

  constructor(private readonly config: Config, cluster: string, coalesceMs: number | undefined) {
    this.coalesceMs = coalesceMs ?? 50;
    this.open(cluster);
  }

  private open(name: string): void {
    const cluster = this.config.clusters.find((candidate) => candidate.name === name);
    this.cluster = cluster;
    if (cluster === undefined || cluster.nodes.length < 2) {
      this.nodes = [];
      this.current = undefined;
      return;
    }
    this.nodes = cluster.nodes.map((node) => this.openNode(cluster, node.name, node.connection.host, node.connection.port));
    this.current = this.compute();
    for (const node of this.nodes) node.runner?.start();
  }

  private openNode(cluster: ClusterConfig, name: string, host: string, port: number): NodeProbes {
    try {
      const targets = openTargets(this.config, { cluster: cluster.name, node: name });
      const runner = new ProbeRunner(probes, targets, {
        refreshMs: this.config.refreshMs,
        timeoutMs: this.config.statementTimeoutMs,
        settings: this.settings(),
      });
      runner.on('refresh', () => this.schedulePublish());
      runner.setPaused(this.paused);
      return { name, host, port, targets, runner, brokenReason: undefined };
    } catch (error) {
      return { name, host, port, targets: undefined, runner: undefined, brokenReason: messageOf(error) };
    }
  }

  /** The config's probe settings, with the server probe as frequent as the replication probe (it carries the timeline). */
  private settings(): Readonly<Record<string, ProbeSettings>> {
    const server = this.config.probes['server'];
    const replication = this.config.probes['replication'];
    return {
      ...this.config.probes,
      server: { enabled: true, cadenceMs: replication?.cadenceMs ?? replicationProbe.cadenceMs, timeoutMs: server?.timeoutMs },
    };
  }

  private compute(): TopologyView | undefined {
    const cluster = this.cluster;
    if (cluster === undefined || this.nodes.length === 0) return undefined;
    const observations = this.nodes.map((node): NodeObservation => {
      if (node.runner === undefined) {
        const broken: ProbeResult<ServerSnapshot> = { status: 'error', error: { message: node.brokenReason ?? 'cannot be opened', hint: undefined, sqlstate: undefined }, since: new Date(), last: undefined };
        return { name: node.name, host: node.host, port: node.port, server: broken, replication: undefined };
      }
      const results = node.runner.results();
      return {
        name: node.name, host: node.host, port: node.port,
        server: results.get('server') as ProbeResult<ServerSnapshot> | undefined,
        replication: results.get('replication') as ProbeResult<ReplicationSnapshot> | undefined,
      };
    });
    return { cluster: cluster.name, topology: buildTopology(observations) };
  }

  private schedulePublish(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closed) return;
      this.current = this.compute();
      this.publish();
    }, this.coalesceMs);
  }

  private publish(): void {
    for (const listener of this.listeners) listener(this.current);
  }

  private shutNodes(nodes: readonly NodeProbes[]): Promise<unknown> {
    return Promise.allSettled(nodes.map(async (node) => {
      await node.runner?.stop();
      await node.targets?.close();
    }));
  }

  view(): TopologyView | undefined {
    return this.current;
  }

  subscribe(listener: (view: TopologyView | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    for (const node of this.nodes) node.runner?.setPaused(paused);
  }

  select(cluster: string): void {
    if (this.closed || cluster === this.cluster?.name) return;
    const previous = this.nodes;
    for (const node of previous) node.runner?.removeAllListeners('refresh');
    this.stopping.push(this.shutNodes(previous));
    this.open(cluster);
    this.publish();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
    const nodes = this.nodes;
    this.nodes = [];
    await Promise.all([...this.stopping, this.shutNodes(nodes)]);
    this.stopping = [];
  }
}

/** A topology monitor on the given cluster (nothing runs for a cluster of one node). */
export function createTopologyMonitor(options: TopologyMonitorOptions): TopologyDesk {
  return new ConsoleTopology(options.config, options.cluster, options.coalesceMs);
}
