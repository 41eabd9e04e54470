/** The Monitor over real servers: a runner per selected node, actions through src/actions. */
import { EventEmitter } from 'node:events';
import type { Config } from '../config/types.js';
import { describeConnection } from '../config/conninfo.js';
import { openTargets, type OpenTargets } from '../db/targets.js';
import { fullQueryText } from '../probes/activity.js';
import { probes } from '../probes/index.js';
import { ProbeRunner, type Results } from '../probes/runner.js';
import type { Selection } from '../screens/types.js';
import { ActionDesk } from './action-desk.js';
import type { ActionProgress, Monitor, PlanView, TargetChoice } from './monitor.js';

export interface MonitorOptions {
  readonly config: Config;
  readonly readOnly: boolean;
  readonly cluster?: string | undefined;
  readonly node?: string | undefined;
  readonly auditPath?: string | undefined;
}

class LiveMonitor implements Monitor {
  readonly choices: readonly (readonly TargetChoice[])[];
  private targets: OpenTargets;
  private runner: ProbeRunner;
  private readonly events = new EventEmitter<{ refresh: [Results] }>();
  private paused = false;
  private desk: ActionDesk;

  constructor(private readonly options: MonitorOptions, cluster: number, node: number) {
    const config = options.config;
    this.choices = config.clusters.map((c) => c.nodes.map((n) => ({ cluster: c.name, node: n.name, label: describeConnection(n.connection) })));
    this.targets = this.open(cluster, node);
    this.runner = this.start();
    this.desk = this.makeDesk(cluster, node);
  }

  get readOnly(): boolean {
    return this.options.readOnly;
  }

  private open(cluster: number, node: number): OpenTargets {
    const clusterConfig = this.options.config.clusters[cluster];
    return openTargets(this.options.config, { cluster: clusterConfig?.name, node: clusterConfig?.nodes[node]?.name });
  }

  private makeDesk(cluster: number, node: number): ActionDesk {
    const connection = this.options.config.clusters[cluster]?.nodes[node]?.connection;
    if (connection === undefined) throw new Error('no such node');
    return new ActionDesk({ node: this.targets.server, connection, readOnly: this.options.readOnly, auditPath: this.options.auditPath, cluster: this.options.config.clusters[cluster]?.name });
  }

  private start(): ProbeRunner {
    const config = this.options.config;
    const runner = new ProbeRunner(probes, this.targets, { refreshMs: config.refreshMs, timeoutMs: config.statementTimeoutMs, settings: config.probes });
    runner.on('refresh', (results) => this.events.emit('refresh', results));
    runner.setPaused(this.paused);
    runner.start();
    return runner;
  }

  results(): Results {
    return this.runner.results();
  }

  subscribe(listener: (results: Results) => void): () => void {
    this.events.on('refresh', listener);
    return () => {
      this.events.off('refresh', listener);
    };
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    this.runner.setPaused(paused);
  }

  select(cluster: number, node: number): void {
    const oldRunner = this.runner;
    const oldTargets = this.targets;
    void oldRunner.stop().then(() => oldTargets.close());
    this.targets = this.open(cluster, node);
    this.runner = this.start();
    this.desk = this.makeDesk(cluster, node);
  }

  async fullQuery(pid: number): Promise<string | null> {
    try {
      const rows = await this.targets.server.query(fullQueryText(pid));
      const text = rows[0]?.['query'];
      return typeof text === 'string' ? text : null;
    } catch {
      return null;
    }
  }

  plan(command: string, selection: Selection, tagged: readonly number[]): Promise<PlanView> {
    return this.desk.plan(command, selection, tagged);
  }

  execute(planId: string, onProgress: (progress: ActionProgress) => void): Promise<void> {
    return this.desk.execute(planId, onProgress);
  }

  decline(planId: string): void {
    this.desk.decline(planId);
  }

  async close(): Promise<void> {
    await this.runner.stop();
    await this.targets.close();
  }
}

/** A monitor on the configured (or named) cluster and node. */
export function createMonitor(options: MonitorOptions): Promise<Monitor> {
  const { cluster, node } = targetOf(options.config, options.cluster, options.node);
  return Promise.resolve(new LiveMonitor(options, cluster, node));
}

/** The indexes of the cluster and node --cluster and --node name (the first ones when not given or not found). */
export function targetOf(config: Config, cluster: string | undefined, node: string | undefined): { cluster: number; node: number } {
  const clusterIndex = Math.max(0, cluster === undefined ? 0 : config.clusters.findIndex((c) => c.name === cluster));
  const nodes = config.clusters[clusterIndex]?.nodes ?? [];
  return { cluster: clusterIndex, node: Math.max(0, node === undefined ? 0 : nodes.findIndex((n) => n.name === node)) };
}
