/**
 * The headless watcher behind `pgwarden --watch`: for every configured node, a ProbeRunner whose
 * probes are refreshed when checks are due (fast, normal, slow cadences); the findings go through
 * the alert engine on a clock tick, notices are written to one durable outbox per channel and then
 * delivered. The engine state and the checks' states are persisted after every step so that a
 * restarted watcher resumes mid-incident: no duplicate notice, and the resolved notice still sent.
 * Never loads Ink. NDJSON events go to the given stream; logs to the log function (stderr).
 */
import type { Writable } from 'node:stream';
import { join } from 'node:path';
import { stepEngine } from '../alerts/engine.js';
import { createNdjsonNotifier } from '../alerts/notifiers/ndjson.js';
import { Outbox, type OutboxOptions, type SendNotice } from '../alerts/outbox.js';
import type { AlertEvent, EngineConfig, EngineState, Evaluation, FindingInput, Notice } from '../alerts/types.js';
import { checks as catalogue, resolveThresholds } from '../checks/catalogue.js';
import { cadenceMs as defaultCadenceMs, type Cadence, type Check, type Finding, type Thresholds } from '../checks/types.js';
import { engineConfigFrom, thresholdOverridesFor } from '../config/alerting.js';
import type { Config } from '../config/types.js';
import { openTargets, type OpenTargets } from '../db/targets.js';
import { messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { probeById, probes as allProbes } from '../probes/index.js';
import { ProbeRunner, type AnyProbe, type Results } from '../probes/runner.js';
import type { ProbeId } from '../probes/types.js';
import { createChannelSenders } from './channels.js';
import { loadWatchState, saveWatchState } from './state-file.js';

export interface WatcherOptions {
  /** Where NDJSON events go (stdout in production). */
  readonly events: Writable;
  /** One log line, without newline (stderr in production). */
  readonly log?: (line: string) => void;
  /** Override of each cadence's interval (tests run in seconds). */
  readonly cadenceMs?: Partial<Readonly<Record<Cadence, number>>>;
  /** The engine's clock tick (default 5 s): evaluations are collected and stepped this often. */
  readonly tickMs?: number;
  /** Retry back-off of the outboxes. */
  readonly outbox?: OutboxOptions;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly now?: () => Date;
}

const defaultTickMs = 5000;
const cadences: readonly Cadence[] = ['fast', 'normal', 'slow'];

interface NodeWatch {
  readonly cluster: string;
  readonly node: string;
  readonly targets: OpenTargets | undefined;
  /** Why the node could not even be set up (its entry is broken). */
  readonly brokenReason: string | undefined;
  readonly runner: ProbeRunner | undefined;
  readonly thresholds: ReadonlyMap<string, Thresholds>;
  readonly lastRun: Map<Cadence, number>;
  running: Promise<void> | undefined;
}

interface Channel {
  readonly id: string;
  readonly outbox: Outbox;
  readonly send: SendNotice;
}

/** Every probe the checks read, with the probes those derive from, in the catalogue's (dependency) order. */
export function probesForChecks(selected: readonly Check[]): AnyProbe[] {
  // The server probe always runs: it tells a down server from a failing check.
  const needed = new Set<ProbeId>(['server', ...selected.flatMap((check) => check.probes)]);
  for (const id of [...needed]) for (const input of probeById(id)?.inputs ?? []) needed.add(input);
  return allProbes.filter((probe) => needed.has(probe.id));
}

/** A channel id as a directory name ("webhook:ops" → "webhook_ops"). */
export function channelDirName(channel: string): string {
  return channel.replace(/[^A-Za-z0-9._-]/g, '_');
}

function unknownFinding(checkId: string, message: string): Finding {
  return {
    checkId, severity: 'unknown', subject: 'cluster', value: null, threshold: null, warningThreshold: null, unit: '',
    message, context: {}, runbook: `docs/alerts.md#${checkId}`,
  };
}

/** The watcher; start() resumes from the state directory, stop() finishes the step in flight and persists. */
export class Watcher {
  private readonly log: (line: string) => void;
  private readonly now: () => Date;
  private readonly tickMs: number;
  private readonly cadence: Readonly<Record<Cadence, number>>;
  private readonly engineConfig: EngineConfig;
  private readonly nodes: NodeWatch[] = [];
  private readonly channels = new Map<string, Channel>();
  private readonly pending: Evaluation[] = [];
  private readonly ndjsonNotices: SendNotice | undefined;
  private closeChannels: (() => void) | undefined;
  private engine: EngineState | undefined;
  private checkStates: Record<string, unknown> = {};
  private timer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private stopped = true;
  /** Evaluations taken in by the engine, by cluster. */
  private readonly stepped = new Map<string, number>();

  constructor(private readonly config: Config, private readonly options: WatcherOptions) {
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.now = options.now ?? (() => new Date());
    this.tickMs = options.tickMs ?? defaultTickMs;
    this.cadence = { ...defaultCadenceMs, ...options.cadenceMs };
    this.engineConfig = engineConfigFrom(config.alerting);
    this.ndjsonNotices = config.alerting.ndjson ? createNdjsonNotifier(options.events).send : undefined;
  }

  /** Loads the persisted state, opens the outboxes and the nodes, and starts the clock. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    const { alerting } = this.config;
    const saved = await loadWatchState(alerting.stateDir);
    this.engine = saved.engine;
    this.checkStates = { ...saved.checks };
    await this.openChannels();
    for (const cluster of this.config.clusters) for (const node of cluster.nodes) this.nodes.push(this.openNode(cluster.name, node.name));
    this.log(`pgwarden watch: ${this.nodes.length} node(s), ${this.channels.size} channel(s), state in ${alerting.stateDir}`);
    this.stopped = false;
    this.schedule(0);
  }

  private async openChannels(): Promise<void> {
    const { alerting } = this.config;
    const dir = (channel: string): string => join(alerting.stateDir, 'outbox', channelDirName(channel));
    const senders = createChannelSenders(alerting, { env: this.options.env, onEmailWarning: (message) => this.log(`email: ${message}`) });
    this.closeChannels = senders.close;
    for (const { id, send } of senders.channels) {
      this.channels.set(id, { id, outbox: await Outbox.open(dir(id), this.options.outbox), send });
    }
  }

  private openNode(cluster: string, node: string): NodeWatch {
    const thresholds = new Map<string, Thresholds>();
    for (const check of catalogue) thresholds.set(check.id, resolveThresholds(check, thresholdOverridesFor(this.config.alerting, cluster, check.id)));
    try {
      const targets = openTargets(this.config, { cluster, node });
      const runner = new ProbeRunner(probesForChecks(catalogue), targets, {
        refreshMs: Math.min(this.cadence.fast, this.config.refreshMs),
        timeoutMs: this.config.statementTimeoutMs,
        settings: this.config.probes,
        now: this.now,
      });
      return { cluster, node, targets, brokenReason: undefined, runner, thresholds, lastRun: new Map(), running: undefined };
    } catch (error) {
      // A broken entry must not stop the others: it reports as a connectivity alert instead.
      this.log(`${cluster}/${node}: cannot be watched: ${messageOf(error)}`);
      return { cluster, node, targets: undefined, brokenReason: messageOf(error), runner: undefined, thresholds, lastRun: new Map(), running: undefined };
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.loop = this.tick().finally(() => {
        this.loop = undefined;
        this.schedule(this.tickMs);
      });
    }, delayMs);
  }

  /** Starts the due evaluations (they report when done) and steps the engine with what has arrived. */
  private async tick(): Promise<void> {
    const now = this.now();
    for (const node of this.nodes) {
      if (node.running !== undefined) continue;
      const due = cadences.filter((cadence) => {
        const last = node.lastRun.get(cadence);
        // Half a tick of slack: a cadence that is a multiple of the tick must not slip by one tick.
        return last === undefined || now.getTime() - last >= this.cadence[cadence] - this.tickMs / 2;
      });
      if (due.length === 0) continue;
      for (const cadence of due) node.lastRun.set(cadence, now.getTime());
      node.running = this.evaluateNode(node, due)
        .then((evaluation) => {
          this.pending.push(evaluation);
        })
        .catch((error: unknown) => this.log(`${node.cluster}/${node.node}: evaluation failed: ${messageOf(error)}`))
        .finally(() => {
          node.running = undefined;
        });
    }
    try {
      await this.step();
    } catch (error) {
      this.log(`engine step failed: ${messageOf(error)}`);
    }
  }

  private async evaluateNode(node: NodeWatch, due: readonly Cadence[]): Promise<Evaluation> {
    const selected = catalogue.filter((check) => due.includes(check.cadence));
    if (node.runner === undefined) {
      const finding: FindingInput = {
        checkId: 'connectivity', severity: 'critical', subject: 'cluster', value: null, threshold: null, unit: 'seconds',
        message: `the node cannot be watched: ${node.brokenReason ?? 'unknown reason'}`, context: {}, runbook: 'docs/alerts.md#connectivity',
      };
      return { cluster: node.cluster, node: node.node, checks: ['connectivity'], findings: [finding] };
    }
    const ids = probesForChecks(selected).map((probe) => probe.id);
    const results = await node.runner.refresh(ids);
    const now = this.now();
    const server = results.get('server');
    // A server that does not answer fails every check the same way: report connectivity alone and
    // leave the other alerts as they are (the engine mutes them while the instance is down).
    const run = server?.status === 'error' ? catalogue.filter((check) => check.id === 'connectivity') : selected;
    const findings: Finding[] = [];
    for (const check of run) findings.push(...this.evaluateCheck(node, check, results, now));
    return { cluster: node.cluster, node: node.node, checks: run.map((check) => check.id), findings };
  }

  private evaluateCheck(node: NodeWatch, check: Check, results: Results, now: Date): Finding[] {
    const key = `${node.cluster}/${node.node}/${check.id}`;
    const thresholds = node.thresholds.get(check.id) ?? check.defaults;
    const previous = this.checkStates[key];
    try {
      const findings = check.evaluate({ results, thresholds, now, previous });
      if (check.nextState !== undefined) this.checkStates[key] = check.nextState({ results, thresholds, now, previous });
      return findings;
    } catch (error) {
      // A check that throws is a bug, but the others must still be evaluated.
      return [unknownFinding(check.id, `cannot evaluate: ${messageOf(error)}`)];
    }
  }

  /** One engine step: events out, notices into the outboxes, state persisted, due notices delivered. */
  private async step(): Promise<void> {
    if (this.engine === undefined) return;
    const evaluations = this.pending.splice(0, this.pending.length);
    const now = this.now();
    const result = stepEngine(this.engine, evaluations, this.engineConfig, now);
    for (const evaluation of evaluations) this.stepped.set(evaluation.cluster, (this.stepped.get(evaluation.cluster) ?? 0) + 1);
    for (const event of result.events) this.emitAlert(event);
    // Notices are stored before the state that produced them: after a crash in between, the same
    // step runs again with the same deterministic ids and the outbox answers "duplicate".
    for (const notice of result.notices) await this.enqueue(notice);
    this.engine = result.state;
    await saveWatchState(this.config.alerting.stateDir, { engine: this.engine, checks: this.checkStates });
    await this.deliver(now);
  }

  private async enqueue(notice: Notice): Promise<void> {
    const channel = this.channels.get(notice.channel);
    if (channel === undefined) {
      this.log(`notice ${notice.id} is for channel "${notice.channel}", which is not configured: dropped`);
      return;
    }
    const queued = await channel.outbox.enqueue(notice);
    if (queued === 'queued' && this.ndjsonNotices !== undefined) {
      await this.ndjsonNotices(notice).catch((error: unknown) => this.log(`ndjson: ${messageOf(error)}`));
    }
  }

  private async deliver(now: Date): Promise<void> {
    for (const channel of this.channels.values()) {
      let sentNotices: Notice[] = [];
      const send: SendNotice = async (notice) => {
        await channel.send(notice);
        sentNotices = [...sentNotices, notice];
      };
      try {
        const report = await channel.outbox.deliverDue(send, now);
        for (const notice of sentNotices) {
          this.emit({ type: 'notice-sent', at: now, channel: channel.id, id: notice.id, kind: notice.kind, subject: notice.subject, recipients: notice.recipients });
        }
        for (const failure of report.failed) {
          this.log(`${channel.id}: notice ${failure.id} failed (attempt ${failure.attempts}): ${failure.error}; next attempt ${failure.nextAttemptAt.toISOString()}`);
          this.emit({ type: 'notice-failed', at: now, channel: channel.id, id: failure.id, attempts: failure.attempts, error: failure.error, nextAttemptAt: failure.nextAttemptAt, stale: failure.stale });
        }
      } catch (error) {
        this.log(`${channel.id}: outbox failed: ${messageOf(error)}`);
      }
    }
  }

  private emitAlert(event: AlertEvent): void {
    this.emit({ type: 'alert', ...event });
  }

  private emit(event: object): void {
    this.options.events.write(`${JSON.stringify(toJsonValue(event))}\n`);
  }

  /** Evaluations of this cluster's nodes the engine has taken in since construction (for tests and a future health line). */
  evaluationsStepped(cluster: string): number {
    return this.stepped.get(cluster) ?? 0;
  }

  /** Stops the clock, waits for the step and evaluations in flight, persists, and closes every connection. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    await this.loop;
    await Promise.allSettled(this.nodes.flatMap((node) => (node.running === undefined ? [] : [node.running])));
    await Promise.allSettled(this.nodes.flatMap((node) => (node.runner === undefined ? [] : [node.runner.stop()])));
    if (this.engine !== undefined) {
      await saveWatchState(this.config.alerting.stateDir, { engine: this.engine, checks: this.checkStates }).catch((error: unknown) => this.log(`cannot save the state: ${messageOf(error)}`));
    }
    await Promise.allSettled(this.nodes.flatMap((node) => (node.targets === undefined ? [] : [node.targets.close()])));
    this.nodes.length = 0;
    this.channels.clear();
    this.closeChannels?.();
    this.closeChannels = undefined;
    this.log('pgwarden watch: stopped');
  }
}

/** `pgwarden --watch`: runs a Watcher on stdout/stderr until the signal aborts, then stops it; resolves with the exit code. */
export async function runWatch(config: Config, options: { readonly signal: AbortSignal }): Promise<number> {
  const watcher = new Watcher(config, { events: process.stdout });
  await watcher.start();
  if (!options.signal.aborted) {
    await new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  await watcher.stop();
  return 0;
}
