/**
 * The headless watcher behind `pgwarden --watch`: for every configured node, a ProbeRunner whose
 * probes are refreshed when checks are due (fast, normal, slow cadences); the findings go through
 * the alert engine on a clock tick, notices are written to one durable outbox per channel and then
 * delivered. The engine state and the checks' states are persisted after every step so that a
 * restarted watcher resumes mid-incident: no duplicate notice, and the resolved notice still sent.
 *
 * As a service it also: applies the operator commands queued in `<stateDir>/commands/` (silences,
 * acknowledgements) at the start of each step; reloads its config on demand (SIGHUP), reopening only
 * the nodes that changed; reports its own failures as alerts of the `monitor` check (cluster
 * "pgwarden", node = host name); raises "no primary reachable" for clusters of several nodes; and
 * pings a heartbeat URL after each good round. For clusters with `failover.automatic` on, it runs
 * the automatic failover and fencing loops (auto-failover.ts), whose steps are `failover` alerts.
 * Never loads Ink. NDJSON events go to the given stream; logs to the log function (stderr).
 */
import { hostname } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { applyCommand, type AlertCommand } from '../alerts/commands.js';
import { stepEngine } from '../alerts/engine.js';
import { createNdjsonNotifier } from '../alerts/notifiers/ndjson.js';
import { Outbox, type DeliveryReport, type OutboxOptions, type SendNotice } from '../alerts/outbox.js';
import { alertKey } from '../alerts/state.js';
import type { AlertEvent, EngineConfig, EngineState, Evaluation, Notice } from '../alerts/types.js';
import { applicationCheckIds } from '../checks/application.js';
import { checks as catalogue, resolveThresholds } from '../checks/catalogue.js';
import { monitorCheck, monitorCluster, monitorFindings, type MonitorStatus, type MonitorThresholds, type OutboxStatus, type Stall } from '../checks/monitor.js';
import { clusterWideNode, noPrimaryFinding } from '../checks/primary.js';
import { splitBrainFinding } from '../checks/replication.js';
import { cadenceMs as defaultCadenceMs, type Cadence, type Check, type Thresholds } from '../checks/types.js';
import { engineConfigFrom, thresholdOverridesFor } from '../config/alerting.js';
import { redact } from '../config/redact.js';
import type { ClusterConfig, Config, NodeConfig } from '../config/types.js';
import { openTargets, type OpenTargets } from '../db/targets.js';
import { isUserError, messageOf, UserError } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { applicationNode } from '../health/application.js';
import { ApplicationSchedule, hasHealthChecks } from '../health/schedule.js';
import { probeById, probes as allProbes } from '../probes/index.js';
import { ProbeRunner, type AnyProbe } from '../probes/runner.js';
import type { ServerSnapshot } from '../probes/server.js';
import type { ProbeId, ProbeResult } from '../probes/types.js';
import { AutoFailover } from './auto-failover.js';
import { BackupJobs } from './backup-jobs.js';
import { createChannelSenders } from './channels.js';
import { brokenNodeEvaluation, checksToRun, clusterThresholds, dueCadences, runChecks } from './node-checks.js';
import { takeCommands } from './commands.js';
import { aliveNotices, ping, redactUrl } from './heartbeat.js';
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
  /**
   * How soon a node whose evaluation found a new problem is evaluated again to confirm it (the
   * second failing evaluation that fires the alert), instead of a whole cadence later. Default 3 s.
   */
  readonly confirmMs?: number;
  /** Retry back-off of the outboxes. */
  readonly outbox?: OutboxOptions;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly now?: () => Date;
  /** The node name of the watcher's own alerts (default: the host name). */
  readonly host?: string;
  /** How backup jobs run pgwarden (default: this node and this script). */
  readonly pgwarden?: readonly string[];
}

const defaultTickMs = 1000;
const defaultConfirmMs = 3000;
/** Checks evaluated per node: all but the watcher's own and the application checks (per cluster, node "app"). */
const nodeChecks: readonly Check[] = catalogue.filter((check) => check.id !== monitorCheck.id && !applicationCheckIds.has(check.id));


interface NodeWatch {
  readonly cluster: string;
  readonly node: string;
  /** What the node's connection depends on: a change reopens it on reload. */
  readonly fingerprint: string;
  readonly targets: OpenTargets | undefined;
  /** Why the node could not even be set up (its entry is broken). */
  readonly brokenReason: string | undefined;
  readonly runner: ProbeRunner | undefined;
  thresholds: ReadonlyMap<string, Thresholds>;
  readonly lastRun: Map<Cadence, number>;
  running: Promise<void> | undefined;
  /** When the evaluation in flight started, and the interval it must finish within. */
  runningSince: number | null;
  runningIntervalMs: number;
  /** Why the last evaluation failed outright (a bug or a broken runner), for the monitor check. */
  lastError: string | null;
  /** The latest server result, for "no primary reachable". */
  server: ProbeResult<ServerSnapshot> | undefined;
  /** Removed by a reload: its evaluation in flight is discarded. */
  removed: boolean;
  /** A new problem to confirm: these cadences are evaluated again at this time. */
  confirm: { readonly at: number; readonly cadences: readonly Cadence[] } | undefined;
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

function nodeFingerprint(config: Config, cluster: ClusterConfig, node: NodeConfig): string {
  return JSON.stringify({
    connection: node.connection,
    pgbouncer: cluster.pgbouncer ?? null,
    refreshMs: config.refreshMs,
    statementTimeoutMs: config.statementTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
    probes: config.probes,
  });
}

function nodeId(cluster: string, node: string): string {
  return `${cluster}/${node}`;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function describeCommand(command: AlertCommand): string {
  switch (command.kind) {
    case 'silence':
      return `silence ${command.silence.id} by ${command.silence.author} until ${new Date(command.silence.endsAt).toISOString()}`;
    case 'unsilence':
      return `unsilence ${command.id}`;
    case 'acknowledge':
      return `acknowledge ${command.key} by ${command.by}`;
    case 'unacknowledge':
      return `unacknowledge ${command.key}`;
  }
}

/** The watcher; start() resumes from the state directory, stop() finishes the step in flight and persists. */
export class Watcher {
  private readonly log: (line: string) => void;
  private readonly now: () => Date;
  private readonly tickMs: number;
  private readonly confirmMs: number;
  /** The state as last written, so that a step that changed nothing does not rewrite (and fsync) it. */
  private savedText: string | undefined;
  private readonly cadence: Readonly<Record<Cadence, number>>;
  private readonly host: string;
  private config: Config;
  private engineConfig: EngineConfig;
  private monitorThresholds: MonitorThresholds;
  private nodes: NodeWatch[] = [];
  /** Application health (HTTP endpoints, custom SQL) of the clusters that declare some. */
  private readonly applications: ApplicationSchedule;
  /** Scheduled backups, dumps, drills and retention, and the backups check, of the clusters with backup settings. */
  private readonly backups: BackupJobs;
  /** Automatic failover and fencing of the clusters with failover.automatic on (auto-failover.ts). */
  private readonly failover: AutoFailover;
  private readonly channels = new Map<string, Channel>();
  private readonly pending: Evaluation[] = [];
  private ndjsonNotices: SendNotice | undefined;
  private closeChannels: (() => void) | undefined;
  private engine: EngineState | undefined;
  private checkStates: Record<string, unknown> = {};
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private watchdogExpected = 0;
  /** Ticks and reloads run one at a time, in order. */
  private exclusive: Promise<unknown> = Promise.resolve();
  private loop: Promise<void> | undefined;
  private stopped = true;
  /** Evaluations taken in by the engine, by cluster. */
  private readonly stepped = new Map<string, number>();
  // What the monitor check reports.
  private reloadError: string | null = null;
  private stateDirError: string | null = null;
  private lastStall: Stall | null = null;
  private pingError: string | null = null;
  private readonly outboxStatus = new Map<string, OutboxStatus>();
  private lastPingAt: number | undefined;
  private pinging: Promise<void> | undefined;
  private alivePeriod: number | undefined;
  /** Evaluations that resolve the alerts of nodes and clusters a reload removed. */
  private readonly farewells: Evaluation[] = [];

  constructor(config: Config, private readonly options: WatcherOptions) {
    this.config = config;
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.now = options.now ?? (() => new Date());
    this.tickMs = options.tickMs ?? defaultTickMs;
    this.confirmMs = options.confirmMs ?? defaultConfirmMs;
    this.cadence = { ...defaultCadenceMs, ...options.cadenceMs };
    this.host = options.host ?? hostname();
    this.engineConfig = engineConfigFrom(config.alerting);
    this.monitorThresholds = this.resolveMonitorThresholds(config);
    this.ndjsonNotices = config.alerting.ndjson ? createNdjsonNotifier(options.events).send : undefined;
    this.applications = new ApplicationSchedule({
      intervalMs: this.cadence.fast,
      slackMs: this.tickMs / 2,
      states: () => this.checkStates,
      onEvaluation: (evaluation) => this.pending.push(evaluation),
      onError: (cluster, message) => this.log(`${cluster}/${applicationNode}: application health evaluation failed: ${redact(message)}`),
    });
    this.backups = new BackupJobs({
      pgwarden: options.pgwarden ?? [process.execPath, resolvePath(process.argv[1] ?? 'pgwarden')],
      stateDir: config.alerting.stateDir,
      catalogIntervalMs: this.cadence.normal,
      log: this.log,
      emit: (event) => this.emit(event),
      onEvaluation: (evaluation) => void this.pending.push(evaluation),
      now: this.now,
      ...(options.env === undefined ? {} : { env: options.env }),
    });
    // Its state (known primary, step alerts, hold-off) is saved with the checks' states under "<cluster>/*/failover".
    this.failover = new AutoFailover({
      log: this.log,
      emit: (event) => this.emit(event),
      now: this.now,
      stateDir: config.alerting.stateDir,
      load: (cluster) => this.checkStates[`${cluster}/${clusterWideNode}/failover`],
      save: (cluster, state) => void (this.checkStates[`${cluster}/${clusterWideNode}/failover`] = state),
      acknowledgedAt: (cluster, subject) => this.engine?.alerts[alertKey(cluster, clusterWideNode, 'failover', subject)]?.acknowledged?.at ?? null,
    });
  }

  private resolveMonitorThresholds(config: Config): MonitorThresholds {
    return resolveThresholds(monitorCheck, thresholdOverridesFor(config.alerting, monitorCluster, monitorCheck.id));
  }

  /** Loads the persisted state, opens the outboxes and the nodes, and starts the clock. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    const { alerting } = this.config;
    const saved = await loadWatchState(alerting.stateDir);
    this.engine = saved.engine;
    this.checkStates = { ...saved.checks };
    await this.backups.load();
    await this.openChannels();
    for (const cluster of this.config.clusters) for (const node of cluster.nodes) this.nodes.push(this.openNode(cluster, node));
    const heartbeat = alerting.heartbeat === undefined ? '' : `, heartbeat ${redactUrl(alerting.heartbeat.url)} every ${alerting.heartbeat.everyMs / 1000} s`;
    this.log(`pgwarden watch: ${this.nodes.length} node(s), ${this.channels.size} channel(s), state in ${alerting.stateDir}${heartbeat}`);
    this.stopped = false;
    // Each cluster's loop logs its own start line.
    await this.failover.configure(this.config);
    this.startWatchdog();
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

  private openNode(cluster: ClusterConfig, node: NodeConfig): NodeWatch {
    const base = {
      cluster: cluster.name, node: node.name, fingerprint: nodeFingerprint(this.config, cluster, node), thresholds: clusterThresholds(this.config, cluster.name),
      lastRun: new Map<Cadence, number>(), running: undefined, runningSince: null, runningIntervalMs: this.cadence.fast, lastError: null, server: undefined, removed: false, confirm: undefined,
    };
    try {
      const targets = openTargets(this.config, { cluster: cluster.name, node: node.name });
      const runner = new ProbeRunner(probesForChecks(nodeChecks), targets, {
        refreshMs: Math.min(this.cadence.fast, this.config.refreshMs),
        timeoutMs: this.config.statementTimeoutMs,
        settings: this.config.probes,
        now: this.now,
      });
      return { ...base, targets, brokenReason: undefined, runner };
    } catch (error) {
      // A broken entry must not stop the others: it reports as a connectivity alert instead.
      this.log(`${cluster.name}/${node.name}: cannot be watched: ${redact(messageOf(error))}`);
      return { ...base, targets: undefined, brokenReason: messageOf(error), runner: undefined };
    }
  }

  private async closeNode(node: NodeWatch): Promise<void> {
    node.removed = true;
    await node.running?.catch(() => undefined);
    await node.runner?.stop().catch(() => undefined);
    await node.targets?.close().catch(() => undefined);
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.exclusive.then(task, task);
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.loop = this.serialized(() => this.tick()).finally(() => {
        this.loop = undefined;
        this.schedule(this.tickMs);
      });
    }, delayMs);
  }

  /**
   * A timer of its own, independent of the steps, that notices when it fires late: the process was
   * suspended (SIGSTOP, a frozen VM) or the event loop was blocked. That is the "heartbeat missed".
   */
  private startWatchdog(): void {
    this.watchdogExpected = performance.now() + this.tickMs;
    this.watchdog = setInterval(() => {
      const at = performance.now();
      const lateMs = at - this.watchdogExpected;
      this.watchdogExpected = at + this.tickMs;
      if (lateMs > this.monitorThresholds.lateTicks * this.tickMs) {
        this.lastStall = { at: this.now().getTime(), lateMs, tickMs: this.tickMs };
        this.log(`pgwarden watch: the loop stalled: a clock tick came ${Math.round(lateMs)} ms late (tick ${this.tickMs} ms); heartbeat missed`);
      }
    }, this.tickMs);
  }

  /** Starts the due evaluations (they report when done) and steps the engine with what has arrived. */
  private async tick(): Promise<void> {
    if (this.stopped) return;
    const now = this.now();
    for (const node of this.nodes) {
      if (node.running !== undefined) continue;
      const confirming = node.confirm !== undefined && now.getTime() >= node.confirm.at ? node.confirm.cadences : [];
      const scheduled = dueCadences(node.lastRun, this.cadence, now.getTime(), this.tickMs);
      const due = [...new Set([...scheduled, ...confirming])];
      if (due.length === 0) continue;
      node.confirm = undefined;
      for (const cadence of scheduled) node.lastRun.set(cadence, now.getTime());
      node.runningSince = now.getTime();
      node.runningIntervalMs = Math.min(...due.map((cadence) => this.cadence[cadence]));
      node.running = this.evaluateNode(node, due)
        .then((evaluation) => {
          node.lastError = null;
          if (node.removed) return;
          this.pending.push(evaluation);
          if (this.hasNewProblem(evaluation)) node.confirm = { at: this.now().getTime() + this.confirmMs, cadences: due };
        })
        .catch((error: unknown) => {
          node.lastError = messageOf(error);
          this.log(`${node.cluster}/${node.node}: evaluation failed: ${redact(messageOf(error))}`);
        })
        .finally(() => {
          node.running = undefined;
          node.runningSince = null;
        });
    }
    this.applications.startDue(() => this.config, now);
    this.backups.startDue(this.config, now);
    try {
      await this.step();
    } catch (error) {
      this.log(`engine step failed: ${redact(messageOf(error))}`);
    }
  }

  /** Whether an evaluation found a problem that is not firing yet: one evaluation more confirms it (or not). */
  private hasNewProblem(evaluation: Evaluation): boolean {
    return evaluation.findings.some((finding) => {
      if (finding.severity !== 'warning' && finding.severity !== 'critical') return false;
      const alert = this.engine?.alerts[alertKey(evaluation.cluster, evaluation.node, finding.checkId, finding.subject)];
      return alert?.status !== 'firing';
    });
  }

  private async evaluateNode(node: NodeWatch, due: readonly Cadence[]): Promise<Evaluation> {
    const selected = nodeChecks.filter((check) => due.includes(check.cadence));
    if (node.runner === undefined) {
      const evaluation = brokenNodeEvaluation(node.cluster, node.node, node.brokenReason);
      const message = evaluation.findings[0]?.message ?? 'the node cannot be watched';
      node.server = { status: 'error', error: { message, hint: undefined, sqlstate: undefined }, since: this.now(), last: undefined };
      return evaluation;
    }
    const ids = probesForChecks(selected).map((probe) => probe.id);
    const results = await node.runner.refresh(ids);
    const now = this.now();
    node.server = results.get('server') as ProbeResult<ServerSnapshot> | undefined;
    const run = checksToRun(selected, results);
    const findings = runChecks(node, run, results, node.thresholds, this.checkStates, now);
    return { cluster: node.cluster, node: node.node, checks: run.map((check) => check.id), findings };
  }

  /** "No primary reachable" for every cluster of several nodes that had a node evaluated in this round. */
  private clusterEvaluations(evaluations: readonly Evaluation[]): Evaluation[] {
    const touched = new Set(evaluations.map((evaluation) => evaluation.cluster));
    const out: Evaluation[] = [];
    for (const cluster of this.config.clusters) {
      if (!touched.has(cluster.name) || cluster.nodes.length < 2) continue;
      const nodes = this.nodes.filter((node) => node.cluster === cluster.name).map((node) => ({ node: node.node, server: node.server }));
      const finding = noPrimaryFinding(nodes);
      if (finding !== undefined) out.push({ cluster: cluster.name, node: clusterWideNode, checks: ['restart'], findings: [finding] });
      const split = splitBrainFinding(nodes);
      if (split !== undefined) out.push({ cluster: cluster.name, node: clusterWideNode, checks: ['split-brain'], findings: [split] });
    }
    return out;
  }

  /** What the watcher knows about itself, for the monitor check. */
  monitorStatus(): MonitorStatus {
    return {
      reloadError: this.reloadError,
      stateDirError: this.stateDirError,
      outboxes: [...this.channels.keys()].map((channel) => this.outboxStatus.get(channel) ?? { channel, failingSince: null, stale: false, lastError: null }),
      evaluations: this.nodes.map((node) => ({ cluster: node.cluster, node: node.node, runningSince: node.runningSince, intervalMs: node.runningIntervalMs, error: node.lastError })),
      lastStall: this.lastStall,
      pingError: this.pingError,
    };
  }

  /** One engine step: commands applied, events out, notices into the outboxes, state persisted, due notices delivered. */
  private async step(): Promise<void> {
    if (this.engine === undefined) return;
    const { stateDir } = this.config.alerting;
    const now = this.now();
    let engine = this.engine;
    const taken = await takeCommands(stateDir, (file, reason) => this.log(`command ${file} rejected (moved to commands/rejected/): ${reason}`)).catch((error: unknown) => {
      this.log(`cannot read the command spool ${join(stateDir, 'commands')}: ${messageOf(error)}`);
      return undefined;
    });
    for (const { id, command } of taken?.commands ?? []) {
      engine = applyCommand(engine, command, now);
      this.log(`command ${id} applied: ${describeCommand(command)}`);
    }
    const nodeEvaluations = this.pending.splice(0, this.pending.length);
    const monitor: Evaluation = { cluster: monitorCluster, node: this.host, checks: [monitorCheck.id], findings: monitorFindings(this.monitorStatus(), this.monitorThresholds, now) };
    const evaluations = [...this.farewells.splice(0, this.farewells.length), ...nodeEvaluations, ...this.clusterEvaluations(nodeEvaluations), ...this.failover.evaluations(), monitor];
    const result = stepEngine(engine, evaluations, this.engineConfig, now);
    for (const evaluation of nodeEvaluations) this.stepped.set(evaluation.cluster, (this.stepped.get(evaluation.cluster) ?? 0) + 1);
    for (const event of result.events) this.emitAlert(event);
    // Notices are stored before the state that produced them: after a crash in between, the same
    // step runs again with the same deterministic ids and the outbox answers "duplicate".
    for (const notice of [...result.notices, ...this.dueAliveNotices(result.state, now)]) await this.enqueue(notice);
    this.engine = result.state;
    let saved = false;
    try {
      const state = { engine: this.engine, checks: this.checkStates };
      const text = JSON.stringify(state);
      if (text !== this.savedText) await saveWatchState(stateDir, state);
      this.savedText = text;
      saved = true;
      if (this.stateDirError !== null) this.log(`the state directory ${stateDir} is writable again`);
      this.stateDirError = null;
    } catch (error) {
      if (this.stateDirError === null) this.log(`cannot save the state in ${stateDir}: ${messageOf(error)}; fix the directory (permissions, disk space)`);
      this.stateDirError = messageOf(error);
    }
    // Only once the state that includes them is on disk: a crash before re-applies them (idempotent).
    if (saved) await taken?.remove().catch((error: unknown) => this.log(`cannot remove applied commands: ${messageOf(error)}`));
    await this.deliver(now);
    if (saved) this.pingIfDue(now);
  }

  /** The "pgwarden is alive" notices, once per digest period. */
  private dueAliveNotices(state: EngineState, now: Date): Notice[] {
    const everyMs = this.config.alerting.heartbeat?.digestEveryMs;
    if (everyMs === undefined) return [];
    const period = Math.floor(now.getTime() / everyMs);
    if (period === this.alivePeriod) return [];
    this.alivePeriod = period;
    const firing = Object.values(state.alerts).filter((alert) => alert.status === 'firing').length;
    const figures = { clusters: this.config.clusters.length, nodes: this.nodes.length, firing, host: this.host };
    return aliveNotices(this.engineConfig.teams, figures, everyMs, now);
  }

  private pingIfDue(now: Date): void {
    const heartbeat = this.config.alerting.heartbeat;
    if (heartbeat === undefined || this.pinging !== undefined) return;
    if (this.lastPingAt !== undefined && now.getTime() - this.lastPingAt < heartbeat.everyMs) return;
    this.lastPingAt = now.getTime();
    this.pinging = ping(heartbeat.url)
      .then(() => {
        if (this.pingError !== null) this.log(`heartbeat ${redactUrl(heartbeat.url)}: answering again`);
        this.pingError = null;
      })
      .catch((error: unknown) => {
        this.log(`heartbeat ping failed: ${messageOf(error)}`);
        this.pingError = messageOf(error);
      })
      .finally(() => {
        this.pinging = undefined;
      });
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
        this.outboxStatus.set(channel.id, await this.outboxHealth(channel, report));
      } catch (error) {
        this.log(`${channel.id}: outbox failed: ${messageOf(error)}`);
        this.outboxStatus.set(channel.id, { channel: channel.id, failingSince: this.outboxStatus.get(channel.id)?.failingSince ?? now.getTime(), stale: false, lastError: messageOf(error) });
      }
    }
  }

  /** Since when the channel's oldest pending notice has been failing. */
  private async outboxHealth(channel: Channel, report: DeliveryReport): Promise<OutboxStatus> {
    if (report.failed.length === 0 && report.waiting === 0) return { channel: channel.id, failingSince: null, stale: false, lastError: null };
    let failingSince: number | null = null;
    let lastError: string | null = null;
    for (const { delivery } of await channel.outbox.pending()) {
      if (delivery.firstFailureAt !== null && (failingSince === null || delivery.firstFailureAt < failingSince)) failingSince = delivery.firstFailureAt;
      lastError = delivery.lastError ?? lastError;
    }
    return { channel: channel.id, failingSince, stale: report.stale.length > 0, lastError };
  }

  /**
   * Reloads the config: `load` reads and validates the file again. A valid file takes effect at once
   * (nodes added, removed or changed are reopened, the others keep their runner and check state;
   * teams, timings, channels and thresholds are replaced; the engine state is kept) and one log line
   * says what changed. An invalid file is logged, the previous config keeps running, and the
   * monitor check raises "config reload". Resolves true when the new config was taken.
   */
  reload(load: () => Config): Promise<boolean> {
    return this.serialized(async () => {
      let next: Config;
      try {
        next = load();
      } catch (error) {
        const message = redact(messageOf(error));
        const hint = isUserError(error) && error.hint !== undefined ? ` (fix: ${redact(error.hint)})` : '';
        this.log(`config reload failed, keeping the previous config: ${message}${hint}`);
        this.reloadError = `${message}${hint}`;
        return false;
      }
      let changes: string[];
      try {
        changes = await this.apply(next);
      } catch (error) {
        // Opening a channel's outbox or a node failed half-way: what was applied stays, the rest is reported.
        this.log(`config reload failed while applying ${next.source}: ${redact(messageOf(error))}`);
        this.reloadError = redact(messageOf(error));
        return false;
      }
      this.reloadError = null;
      this.log(`config reloaded from ${next.source}: ${changes.length === 0 ? 'no change' : changes.join('; ')}`);
      return true;
    });
  }

  private async apply(loaded: Config): Promise<string[]> {
    const previous = this.config;
    const changes: string[] = [];
    let next = loaded;
    if (loaded.alerting.stateDir !== previous.alerting.stateDir) {
      changes.push(`state_dir change to ${loaded.alerting.stateDir} ignored until a restart (still ${previous.alerting.stateDir})`);
      next = { ...loaded, alerting: { ...loaded.alerting, stateDir: previous.alerting.stateDir } };
    }
    this.config = next;
    if (this.stopped) return ['not running'];

    // Nodes: keep the unchanged ones (runner, connections, check state), reopen the changed ones.
    const wanted = new Map<string, { cluster: ClusterConfig; node: NodeConfig }>();
    for (const cluster of next.clusters) for (const node of cluster.nodes) wanted.set(nodeId(cluster.name, node.name), { cluster, node });
    const kept: NodeWatch[] = [];
    const added: string[] = [];
    const removed: string[] = [];
    const reopened: string[] = [];
    for (const node of this.nodes) {
      const id = nodeId(node.cluster, node.node);
      const entry = wanted.get(id);
      if (entry === undefined) {
        removed.push(id);
        await this.closeNode(node);
        // Its alerts resolve: nobody watches it any more.
        this.farewells.push({ cluster: node.cluster, node: node.node, checks: nodeChecks.map((check) => check.id), findings: [] });
        this.forgetCheckStates(id);
      } else if (nodeFingerprint(next, entry.cluster, entry.node) !== node.fingerprint) {
        reopened.push(id);
        await this.closeNode(node);
        // It may be another server now: its baselines (role, counters) start again.
        this.forgetCheckStates(id);
        kept.push(this.openNode(entry.cluster, entry.node));
      } else {
        node.thresholds = clusterThresholds(this.config, node.cluster);
        kept.push(node);
      }
      wanted.delete(id);
    }
    for (const [id, { cluster, node }] of wanted) {
      added.push(id);
      kept.push(this.openNode(cluster, node));
    }
    this.nodes = kept;
    // A cluster that no longer has several nodes has no "no primary" verdict any more.
    const multi = new Set(next.clusters.filter((cluster) => cluster.nodes.length >= 2).map((cluster) => cluster.name));
    for (const cluster of previous.clusters) {
      if (cluster.nodes.length >= 2 && !multi.has(cluster.name)) this.farewells.push({ cluster: cluster.name, node: clusterWideNode, checks: ['restart', 'split-brain'], findings: [] });
    }
    // Application health: a cluster whose endpoints and SQL checks are all gone resolves their alerts.
    for (const cluster of previous.clusters) {
      if (hasHealthChecks(previous, cluster.name) && !hasHealthChecks(next, cluster.name)) {
        this.farewells.push({ cluster: cluster.name, node: applicationNode, checks: [...applicationCheckIds], findings: [] });
        this.applications.forget(cluster.name);
      }
    }
    if (!same(previous.health, next.health)) changes.push('application health checks changed');
    if (!same(previous.backups, next.backups)) changes.push('backups changed');
    if (added.length > 0) changes.push(`nodes added: ${added.join(', ')}`);
    if (removed.length > 0) changes.push(`nodes removed: ${removed.join(', ')}`);
    if (reopened.length > 0) changes.push(`nodes reopened: ${reopened.join(', ')}`);
    changes.push(...(await this.failover.configure(next)));

    // Channels: reopened when their settings changed (outboxes resume from disk).
    if (!same([previous.alerting.email, previous.alerting.webhooks], [next.alerting.email, next.alerting.webhooks])) {
      this.closeChannels?.();
      this.channels.clear();
      this.outboxStatus.clear();
      await this.openChannels();
      changes.push(`channels: ${[...this.channels.keys()].join(', ') || '(none)'}`);
    }
    if (previous.alerting.ndjson !== next.alerting.ndjson) {
      this.ndjsonNotices = next.alerting.ndjson ? createNdjsonNotifier(this.options.events).send : undefined;
      changes.push(`ndjson notices ${next.alerting.ndjson ? 'on' : 'off'}`);
    }
    if (!same(previous.alerting.teams, next.alerting.teams)) changes.push(`teams: ${next.alerting.teams.map((team) => team.id).join(', ') || '(none)'}`);
    if (!same([previous.alerting.timing, previous.alerting.failingEvaluations, previous.alerting.cooldownMs, previous.alerting.rateLimit], [next.alerting.timing, next.alerting.failingEvaluations, next.alerting.cooldownMs, next.alerting.rateLimit])) {
      changes.push('timing changed');
    }
    if (!same(previous.alerting.thresholds, next.alerting.thresholds)) changes.push('thresholds changed');
    if (!same(previous.alerting.heartbeat, next.alerting.heartbeat)) {
      changes.push(next.alerting.heartbeat === undefined ? 'heartbeat off' : `heartbeat ${redactUrl(next.alerting.heartbeat.url)}`);
      this.lastPingAt = undefined;
      this.pingError = null;
      this.alivePeriod = undefined;
    }
    this.engineConfig = engineConfigFrom(next.alerting);
    this.monitorThresholds = this.resolveMonitorThresholds(next);
    return changes;
  }

  private forgetCheckStates(id: string): void {
    this.checkStates = Object.fromEntries(Object.entries(this.checkStates).filter(([key]) => !key.startsWith(`${id}/`)));
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

  /** The nodes being watched, as "cluster/node". */
  watchedNodes(): string[] {
    return this.nodes.map((node) => nodeId(node.cluster, node.node));
  }

  /** Stops the clock, waits for the step and evaluations in flight, persists, and closes every connection. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    await this.loop;
    await this.exclusive;
    await this.failover.stop();
    await this.pinging;
    await Promise.allSettled(this.nodes.flatMap((node) => (node.running === undefined ? [] : [node.running])));
    await this.applications.settle();
    await this.backups.stop();
    await Promise.allSettled(this.nodes.flatMap((node) => (node.runner === undefined ? [] : [node.runner.stop()])));
    if (this.engine !== undefined) {
      await saveWatchState(this.config.alerting.stateDir, { engine: this.engine, checks: this.checkStates }).catch((error: unknown) => this.log(`cannot save the state: ${messageOf(error)}`));
    }
    await Promise.allSettled(this.nodes.flatMap((node) => (node.targets === undefined ? [] : [node.targets.close()])));
    this.nodes = [];
    this.channels.clear();
    this.closeChannels?.();
    this.closeChannels = undefined;
    this.log('pgwarden watch: stopped');
  }
}

/** The environment variable that shortens the watcher's intervals (tests, demos): "tick=250,fast=500,normal=60000,slow=3600000". */
export const intervalsVariable = 'PGWARDEN_WATCH_INTERVALS_MS';

/** The tick and cadence overrides of PGWARDEN_WATCH_INTERVALS_MS; a malformed value is a user error. */
export function intervalsFromEnv(env: Readonly<Record<string, string | undefined>>): { tickMs?: number; cadenceMs?: Partial<Record<Cadence, number>>; outbox?: OutboxOptions } {
  const text = env[intervalsVariable];
  if (text === undefined || text.trim() === '') return {};
  const cadenceMs: Partial<Record<Cadence, number>> = {};
  let tickMs: number | undefined;
  let retryMs: number | undefined;
  for (const part of text.split(',')) {
    const [name = '', value = ''] = part.split('=').map((item) => item.trim());
    const ms = Number(value);
    if (!Number.isInteger(ms) || ms < 50 || ms > 86_400_000) {
      throw new UserError(`${intervalsVariable}: "${part}" is not name=milliseconds (50 to 86400000)`, `write it as ${intervalsVariable}=tick=1000,fast=5000`);
    }
    if (name === 'tick') tickMs = ms;
    else if (name === 'retry') retryMs = ms;
    else if (name === 'fast' || name === 'normal' || name === 'slow') cadenceMs[name] = ms;
    else throw new UserError(`${intervalsVariable}: unknown interval "${name}"`, 'use tick, fast, normal, slow or retry');
  }
  return {
    ...(tickMs === undefined ? {} : { tickMs }),
    cadenceMs,
    // retry: the outbox's first back-off after a failed delivery (it doubles up to 4 times that).
    ...(retryMs === undefined ? {} : { outbox: { initialBackoffMs: retryMs, maxBackoffMs: 4 * retryMs } }),
  };
}

/** How runWatch learns that the config must be reloaded (SIGHUP, wired by the CLI). */
export interface ReloadHook {
  /** Reads and validates the config file again; throws a UserError naming file, key and fix. */
  readonly load: () => Config;
  /** Registers the handler to call on each reload request; returns how to unregister it. */
  readonly subscribe: (handler: () => void) => () => void;
}

/** `pgwarden --watch`: runs a Watcher on stdout/stderr until the signal aborts, then stops it; resolves with the exit code. */
export async function runWatch(config: Config, options: { readonly signal: AbortSignal; readonly reload?: ReloadHook; readonly env?: Readonly<Record<string, string | undefined>> }): Promise<number> {
  const env = options.env ?? process.env;
  const watcher = new Watcher(config, { events: process.stdout, env, ...intervalsFromEnv(env) });
  await watcher.start();
  const unsubscribe = options.reload?.subscribe(() => {
    const hook = options.reload;
    if (hook !== undefined) void watcher.reload(hook.load).catch((error: unknown) => process.stderr.write(`config reload failed: ${redact(messageOf(error))}\n`));
  });
  if (!options.signal.aborted) {
    await new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }));
  }
  unsubscribe?.();
  await watcher.stop();
  return 0;
}
