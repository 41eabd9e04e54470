/**
 * The console's own alert engine. While the console runs, every check of the catalogue (but the
 * watcher's report on itself) is evaluated at its cadence against every configured node, on
 * connections of its own (so the probes the checks need are refreshed whatever view is shown), and
 * the findings go through the same engine as `pgwarden --watch`, with no teams: the console never
 * sends a notice, the watcher does.
 * The engine state lives in memory. Operator commands (acknowledge, silence…) are applied to it at
 * once and queued in the watcher's spool (alerting.state_dir/commands) so that a running watcher
 * applies them too. Everything here runs on timers and promises, never inside a render.
 */
import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { applyCommand, type AlertCommand } from '../alerts/commands.js';
import { initialEngineState, stepEngine } from '../alerts/engine.js';
import type { AlertEvent, EngineConfig, EngineState, Evaluation } from '../alerts/types.js';
import { applicationCheckIds } from '../checks/application.js';
import { checks as catalogue } from '../checks/catalogue.js';
import { unknownFinding } from '../checks/helpers.js';
import { cadenceMs as defaultCadenceMs, type Cadence, type Check, type Thresholds } from '../checks/types.js';
import { engineConfigFrom } from '../config/alerting.js';
import type { Config } from '../config/types.js';
import { openTargets, type OpenTargets } from '../db/targets.js';
import { messageOf, UserError } from '../errors.js';
import { ApplicationSchedule } from '../health/schedule.js';
import { ProbeRunner, type AnyProbe } from '../probes/runner.js';
import { queueCommand } from '../watch/commands.js';
import { brokenNodeEvaluation, checksToRun, clusterThresholds, dueCadences, runChecks } from '../watch/node-checks.js';
import { loadWatchState, stateFileName } from '../watch/state-file.js';
import type { AlertsView } from './alerts-view.js';

/** The environment variable that shortens every check cadence (for tests: the defaults are minutes). */
export const checkCadenceEnv = 'PGWARDEN_CHECK_CADENCE_MS';

/** How many alert events the console keeps for the history section. */
export const historyLength = 50;

/** The checks the console evaluates per node: all but the watcher's report on itself and the application checks (per cluster). */
const consoleChecks: readonly Check[] = catalogue.filter((check) => check.id !== 'monitor' && !applicationCheckIds.has(check.id));

const defaultTickMs = 5000;
const watcherCheckMs = 10_000;
const cadences: readonly Cadence[] = ['fast', 'normal', 'slow'];

/** The alert engine as the console shell uses it (the real one below; tests give their own). */
export interface AlertDesk {
  /** The engine state and its history, now. */
  view(): AlertsView;
  /** Called after every engine step with the view and the events of that step. Returns the unsubscribe function. */
  subscribe(listener: (view: AlertsView, events: readonly AlertEvent[]) => void): () => void;
  /**
   * Applies a command to the console's engine at once, then queues it for a watcher; resolves with
   * the queued command's id, rejects with why it could not be queued (it is applied here anyway).
   */
  apply(command: AlertCommand): Promise<string>;
  /** The name acknowledgements and silences are signed with. */
  readonly author: string;
  /** A fresh silence id. */
  newSilenceId(): string;
  /** Stops the clock, waits for evaluations in flight and closes every connection. */
  close(): Promise<void>;
}

/**
 * The cadences PGWARDEN_CHECK_CADENCE_MS asks for (every cadence set to it), or undefined when it
 * is not set. A value that is not a whole number of at least 100 ms is refused.
 */
export function cadenceFromEnv(env: Readonly<Record<string, string | undefined>>): Partial<Record<Cadence, number>> | undefined {
  const text = env[checkCadenceEnv];
  if (text === undefined || text === '') return undefined;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 100) {
    throw new UserError(`${checkCadenceEnv}=${text} is not a whole number of milliseconds of at least 100`, `unset it (it is meant for tests), or set e.g. ${checkCadenceEnv}=1000`);
  }
  return { fast: ms, normal: ms, slow: ms };
}

/** The name operator commands are signed with: the OS user, marked as coming from the console. */
export function consoleAuthor(env: Readonly<Record<string, string | undefined>> = process.env): string {
  let user = env['USER'] ?? env['LOGNAME'];
  if (user === undefined || user === '') {
    try {
      user = userInfo().username;
    } catch {
      user = 'unknown';
    }
  }
  return `${user} (console)`;
}

export interface AlertMonitorOptions {
  readonly config: Config;
  /** Overrides of each cadence's interval (default: PGWARDEN_CHECK_CADENCE_MS, else the checks' own). */
  readonly cadenceMs?: Partial<Readonly<Record<Cadence, number>>> | undefined;
  /** The engine's clock tick (default 5 s, or the shortest cadence when shorter). */
  readonly tickMs?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly now?: () => Date;
}

interface NodeChecks {
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

class ConsoleAlerts implements AlertDesk {
  readonly author: string;
  private readonly now: () => Date;
  private readonly cadence: Readonly<Record<Cadence, number>>;
  private readonly tickMs: number;
  private readonly engineConfig: EngineConfig;
  private readonly stateDir: string;
  private readonly nodes: NodeChecks[] = [];
  private readonly applications: ApplicationSchedule;
  private readonly listeners = new Set<(view: AlertsView, events: readonly AlertEvent[]) => void>();
  private readonly pending: Evaluation[] = [];
  private checkStates: Record<string, unknown> = {};
  private engine: EngineState = initialEngineState();
  private history: readonly AlertEvent[] = [];
  private evaluatedAt: Date | null = null;
  private watcher = false;
  private watcherCheckedAt = Number.NEGATIVE_INFINITY;
  private silencesTaken = false;
  private probesFor: ((checks: readonly Check[]) => AnyProbe[]) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private current: AlertsView;

  constructor(private readonly config: Config, options: AlertMonitorOptions) {
    const env = options.env ?? process.env;
    this.now = options.now ?? (() => new Date());
    this.author = consoleAuthor(env);
    this.cadence = { ...defaultCadenceMs, ...(options.cadenceMs ?? cadenceFromEnv(env)) };
    this.tickMs = options.tickMs ?? Math.min(defaultTickMs, ...cadences.map((cadence) => this.cadence[cadence]));
    // No teams: the engine decides what fires and resolves; the watcher is the one that notifies.
    this.engineConfig = { ...engineConfigFrom(config.alerting), teams: [] };
    this.stateDir = config.alerting.stateDir;
    this.current = this.makeView();
    this.applications = new ApplicationSchedule({
      intervalMs: this.cadence.fast,
      slackMs: this.tickMs / 2,
      states: () => this.checkStates,
      onEvaluation: (evaluation) => {
        this.pending.push(evaluation);
        this.step();
      },
      // evaluateApplication turns failures into findings; this is a bug, shown like a failed node evaluation.
      onError: (cluster, message) => {
        this.pending.push({ cluster, node: 'app', checks: ['http-endpoint'], findings: [unknownFinding('http-endpoint', `the evaluation failed: ${message}`)] });
      },
    });
  }

  /** Opens the nodes, takes the watcher's silences, and starts the clock. */
  async start(): Promise<void> {
    // The watcher module (and what it loads) is not needed for the first frame.
    const { probesForChecks } = await import('../watch/watcher.js');
    this.probesFor = probesForChecks;
    const probes = probesForChecks(consoleChecks);
    for (const cluster of this.config.clusters) for (const node of cluster.nodes) this.nodes.push(this.openNode(cluster.name, node.name, probes));
    await this.readWatcherState();
    this.publish([]);
    this.schedule(0);
  }

  private openNode(cluster: string, node: string, probes: readonly AnyProbe[]): NodeChecks {
    const thresholds = clusterThresholds(this.config, cluster);
    try {
      const targets = openTargets(this.config, { cluster, node });
      const runner = new ProbeRunner(probes, targets, {
        refreshMs: Math.min(this.cadence.fast, this.config.refreshMs),
        timeoutMs: this.config.statementTimeoutMs,
        settings: this.config.probes,
        now: this.now,
      });
      return { cluster, node, targets, brokenReason: undefined, runner, thresholds, lastRun: new Map(), running: undefined };
    } catch (error) {
      return { cluster, node, targets: undefined, brokenReason: messageOf(error), runner: undefined, thresholds, lastRun: new Map(), running: undefined };
    }
  }

  /** Whether a watcher keeps its state in the state directory; at the first look, its silences are taken over. */
  private async readWatcherState(): Promise<void> {
    this.watcherCheckedAt = Date.now();
    try {
      await access(join(this.stateDir, stateFileName));
    } catch {
      this.watcher = false;
      return;
    }
    this.watcher = true;
    if (this.silencesTaken) return;
    this.silencesTaken = true;
    try {
      const saved = await loadWatchState(this.stateDir);
      const at = this.now().getTime();
      this.engine = { ...this.engine, silences: saved.engine.silences.filter((silence) => silence.endsAt > at) };
    } catch {
      // A state the watcher itself cannot read is its problem to report; the console starts without its silences.
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

  /** Starts the due evaluations (each steps the engine when it arrives) and lets the engine's time pass. */
  private async tick(): Promise<void> {
    const now = this.now();
    for (const node of this.nodes) {
      if (node.running !== undefined) continue;
      const due = dueCadences(node.lastRun, this.cadence, now.getTime(), this.tickMs);
      if (due.length === 0) continue;
      for (const cadence of due) node.lastRun.set(cadence, now.getTime());
      node.running = this.evaluateNode(node, due)
        // An evaluation that fails outright (a bug, not a probe error) shows as an unknown: the
        // console has no log to write it to without breaking the screen.
        .catch((error: unknown): Evaluation => ({ cluster: node.cluster, node: node.node, checks: ['connectivity'], findings: [unknownFinding('connectivity', `the evaluation failed: ${messageOf(error)}`)] }))
        .then((evaluation) => {
          this.pending.push(evaluation);
          this.step();
        })
        .finally(() => {
          node.running = undefined;
        });
    }
    this.applications.startDue(() => this.config, now);
    if (Date.now() - this.watcherCheckedAt >= watcherCheckMs) await this.readWatcherState();
    this.step();
  }

  private async evaluateNode(node: NodeChecks, due: readonly Cadence[]): Promise<Evaluation> {
    const selected = consoleChecks.filter((check) => due.includes(check.cadence));
    if (node.runner === undefined) return brokenNodeEvaluation(node.cluster, node.node, node.brokenReason);
    const probes = this.probesFor?.(selected) ?? [];
    const results = await node.runner.refresh(probes.map((probe) => probe.id));
    const now = this.now();
    const run = checksToRun(selected, results);
    const findings = runChecks(node, run, results, node.thresholds, this.checkStates, now);
    return { cluster: node.cluster, node: node.node, checks: run.map((check) => check.id), findings };
  }

  /** One engine step with the evaluations that arrived: synchronous and cheap (no teams, no notices). */
  private step(): void {
    if (this.stopped) return;
    const evaluations = this.pending.splice(0, this.pending.length);
    const now = this.now();
    const result = stepEngine(this.engine, evaluations, this.engineConfig, now);
    this.engine = result.state;
    if (evaluations.length > 0) this.evaluatedAt = now;
    if (result.events.length > 0) this.history = [...[...result.events].reverse(), ...this.history].slice(0, historyLength);
    this.publish(result.events);
  }

  private makeView(): AlertsView {
    return {
      engine: this.engine,
      history: this.history,
      stateDir: this.stateDir,
      watcher: this.watcher,
      evaluatedAt: this.evaluatedAt,
      nodes: this.config.clusters.reduce((sum, cluster) => sum + cluster.nodes.length, 0),
      checks: consoleChecks.length,
    };
  }

  private publish(events: readonly AlertEvent[]): void {
    const next = this.makeView();
    const same = next.engine === this.current.engine && next.history === this.current.history && next.watcher === this.current.watcher && next.evaluatedAt === this.current.evaluatedAt;
    if (same && events.length === 0) return;
    this.current = next;
    for (const listener of this.listeners) listener(next, events);
  }

  view(): AlertsView {
    return this.current;
  }

  subscribe(listener: (view: AlertsView, events: readonly AlertEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async apply(command: AlertCommand): Promise<string> {
    this.engine = applyCommand(this.engine, command, this.now());
    this.publish([]);
    return queueCommand(this.stateDir, command);
  }

  newSilenceId(): string {
    return `console-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.listeners.clear();
    await this.loop;
    await Promise.allSettled(this.nodes.flatMap((node) => (node.running === undefined ? [] : [node.running])));
    await this.applications.settle();
    await Promise.allSettled(this.nodes.flatMap((node) => (node.runner === undefined ? [] : [node.runner.stop()])));
    await Promise.allSettled(this.nodes.flatMap((node) => (node.targets === undefined ? [] : [node.targets.close()])));
  }
}

/** Starts the console's alert engine over every configured node. */
export async function createAlertMonitor(options: AlertMonitorOptions): Promise<AlertDesk> {
  const alerts = new ConsoleAlerts(options.config, options);
  await alerts.start();
  return alerts;
}
