/**
 * Automatic failover in `pgwarden --watch` (issue 6 item 5; docs/failover.md "Automatic failover").
 * For every cluster of several nodes with `failover.automatic` on, a loop of its own (one round a
 * second, independent of the checks' cadences) reads every node's role, timeline and WAL position
 * with a short timeout, feeds the pure decision (failover-decision.ts) and acts on its verdict:
 *
 * - primary declared lost → planFailover({ reason: 'automatic', lastPrimaryLsn }) and runFailover
 *   (src/cluster/failover.ts): PgBouncer paused, the best standby promoted (rule 10), PgBouncer
 *   repointed, the other standbys following, the old primary recorded as deposed. Then the cluster
 *   is held off: no second automatic failover until a human acknowledges the "outcome" alert or
 *   the hold-off (1 h) expires.
 * - two writable primaries (the old one came back) → fenceTarget names the one to fence (the
 *   deposed record, or the older timeline; equal timelines: none, a human decides) → fenceNode and
 *   rejoinNode (src/cluster/fence.ts). A fencing that failed is not retried until acknowledged.
 *
 * Each step is a critical finding of the `failover` check (src/checks/failover.ts) on the
 * cluster-wide node "*", handed to the watcher's alert engine by evaluations(); each is also a log
 * line and an NDJSON event {type: "failover"} at once. What must survive a restart of the watcher
 * (the primary it knows, the steps' alerts, the hold-off) is saved with the watcher's check states.
 */
import type { Evaluation } from '../alerts/types.js';
import { failoverCheckId, failoverFinding, failoverSubjects } from '../checks/failover.js';
import { deposedNodes, planFailover, runFailover, type FailoverPlan } from '../cluster/failover.js';
import { fenceNode, fenceTarget, rejoinNode } from '../cluster/fence.js';
import { readPosition, type NodePosition } from '../cluster/roles.js';
import { clusterWideNode } from '../checks/primary.js';
import { redact } from '../config/redact.js';
import type { ClusterConfig, Config, NodeConfig } from '../config/types.js';
import { isUserError, messageOf } from '../errors.js';
import { formatBytes } from '../format/units.js';
import { decide, holdOff, initialDecision, releaseHoldOff, type DecisionState, type HoldOff, type Verdict } from './failover-decision.js';

export interface AutoFailoverOptions {
  readonly log: (line: string) => void;
  /** One NDJSON event. */
  readonly emit: (event: object) => void;
  readonly now?: () => Date;
  /** config.alerting.stateDir: where failover.ts keeps the deposed records. */
  readonly stateDir: string;
  /** Time between two rounds (default 1 s). */
  readonly intervalMs?: number;
  /** How long one node's probe may take, connection included (default 1.5 s). */
  readonly probeTimeoutMs?: number;
  /** How long a step's alert stays critical, and the cluster held off, without an acknowledgement (default 1 h). */
  readonly holdOffMs?: number;
  /** A cluster's saved state (the watcher's check states, persisted with its alert state). */
  readonly load: (cluster: string) => unknown;
  readonly save: (cluster: string, state: unknown) => void;
  /** When the cluster-wide alert of this failover subject was acknowledged (ms), or null. */
  readonly acknowledgedAt: (cluster: string, subject: string) => number | null;
}

export const defaultRoundMs = 1000;
export const defaultProbeTimeoutMs = 1500;
/** How long a cluster is held off after an automatic failover that nobody acknowledged. */
export const defaultHoldOffMs = 3_600_000;

/** One step's alert, as saved. */
interface StepRecord {
  readonly subject: string;
  readonly message: string;
  /** When the step's alert was raised (its latest message). */
  readonly at: number;
  /** When its episode began: an acknowledgement older than this is of an earlier episode. */
  readonly since: number;
  /** A fencing that failed (or needs a human) is not retried until acknowledged. */
  readonly failed: boolean;
  readonly details: Readonly<Record<string, string | number | null>>;
}

interface SavedState {
  readonly version: 1;
  readonly knownPrimary: string | null;
  readonly holdOff: HoldOff | null;
  readonly steps: readonly StepRecord[];
}

interface Observed {
  readonly node: NodeConfig;
  readonly position: NodePosition | undefined;
  readonly error: string | null;
}

function fingerprint(cluster: ClusterConfig): string {
  return JSON.stringify({ nodes: cluster.nodes, pgbouncer: cluster.pgbouncer ?? null, failover: cluster.failover });
}

/** Whether automatic failover runs for this cluster. */
export function automaticFailover(cluster: ClusterConfig): boolean {
  return cluster.failover.automatic && cluster.nodes.length >= 2;
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

function parseSaved(value: unknown): SavedState | undefined {
  if (typeof value !== 'object' || value === null || (value as { version?: unknown }).version !== 1) return undefined;
  const saved = value as SavedState;
  return Array.isArray(saved.steps) ? saved : undefined;
}

function errorText(error: unknown): string {
  const hint = isUserError(error) && error.hint !== undefined ? ` (next: ${error.hint})` : '';
  return redact(`${messageOf(error)}${hint}`);
}

/** The verdicts of a primary that does not answer (its return is worth a log line). */
const unreachableCodes = new Set(['waiting', 'cut-off', 'no-standby', 'other-primary', 'confirming', 'declared', 'no-candidate', 'held-off']);

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The loop of one cluster. */
class ClusterLoop {
  private decision: DecisionState;
  private knownPrimary: string | null;
  private readonly steps = new Map<string, StepRecord>();
  private lastCode: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(
    public cluster: ClusterConfig,
    private readonly options: Required<Pick<AutoFailoverOptions, 'intervalMs' | 'probeTimeoutMs' | 'holdOffMs'>> & AutoFailoverOptions & { readonly now: () => Date },
  ) {
    const saved = parseSaved(options.load(cluster.name));
    this.knownPrimary = saved?.knownPrimary ?? null;
    this.decision = { ...initialDecision(), holdOff: saved?.holdOff ?? null };
    for (const step of saved?.steps ?? []) this.steps.set(step.subject, step);
  }

  private get name(): string {
    return this.cluster.name;
  }

  private log(line: string): void {
    this.options.log(`${this.name}: automatic failover: ${line}`);
  }

  start(): void {
    const f = this.cluster.failover;
    this.log(`on (the primary is declared lost after ${seconds(f.lostAfterMs)} without an answer while every standby that answers lost its WAL stream; lag limit ${formatBytes(f.maxLagBytes)})${this.decision.holdOff === null ? '' : `; held off until ${new Date(this.decision.holdOff.until).toISOString()}`}`);
    this.schedule(0);
  }

  /** A reload changed the cluster's settings; new nodes start the decision afresh (the hold-off stays). */
  update(cluster: ClusterConfig): void {
    const nodesChanged = JSON.stringify(cluster.nodes) !== JSON.stringify(this.cluster.nodes);
    this.cluster = cluster;
    if (nodesChanged) {
      this.decision = { ...initialDecision(), holdOff: this.decision.holdOff };
      if (this.knownPrimary !== null && !cluster.nodes.some((node) => node.name === this.knownPrimary)) this.knownPrimary = null;
      this.persist();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.abort.abort();
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const started = Date.now();
      this.running = this.round()
        .catch((error: unknown) => this.log(`round failed: ${errorText(error)}`))
        .finally(() => {
          this.running = undefined;
          this.schedule(Math.max(0, this.options.intervalMs - (Date.now() - started)));
        });
    }, delayMs);
  }

  /** The step findings now, for the alert engine. */
  evaluation(): Evaluation {
    this.retireSteps(this.options.now().getTime());
    return {
      cluster: this.name, node: clusterWideNode, checks: [failoverCheckId],
      findings: [...this.steps.values()].map((step) => failoverFinding(step.subject, step.message, step.details)),
    };
  }

  private persist(): void {
    const state: SavedState = { version: 1, knownPrimary: this.knownPrimary, holdOff: this.decision.holdOff, steps: [...this.steps.values()] };
    this.options.save(this.name, state);
  }

  /** Raises (or updates) a step's critical alert, logs it and emits its event. */
  private raise(subject: string, step: string, message: string, details: Record<string, string | number | null> = {}, failed = false): void {
    const at = this.options.now().getTime();
    const since = this.steps.get(subject)?.since ?? at;
    this.steps.set(subject, { subject, message, at, since, failed, details });
    this.persist();
    this.log(message);
    this.options.emit({ type: 'failover', at: new Date(at), cluster: this.name, step, subject, message, details });
  }

  /** Steps acknowledged by a human or older than the hold-off go; the hold-off ends with the outcome's alert. */
  private retireSteps(now: number): void {
    let changed = false;
    for (const step of [...this.steps.values()]) {
      const acknowledged = this.options.acknowledgedAt(this.name, step.subject);
      if ((acknowledged !== null && acknowledged >= step.since) || now >= step.at + this.options.holdOffMs) {
        this.steps.delete(step.subject);
        changed = true;
        if (step.subject === failoverSubjects.outcome && this.decision.holdOff !== null) {
          this.decision = releaseHoldOff(this.decision);
          this.log(acknowledged !== null && acknowledged >= step.since ? 'the failover alert was acknowledged: automatic failover is armed again' : 'the hold-off expired: automatic failover is armed again');
        }
      }
    }
    if (changed) this.persist();
  }

  private async observe(): Promise<Observed[]> {
    const timeoutMs = this.options.probeTimeoutMs;
    return Promise.all(this.cluster.nodes.map(async (node): Promise<Observed> => {
      const spec = { ...node.connection, connectTimeoutMs: Math.min(node.connection.connectTimeoutMs, timeoutMs) };
      try {
        return { node, position: await withTimeout(readPosition(spec), timeoutMs, node.name), error: null };
      } catch (error) {
        return { node, position: undefined, error: messageOf(error) };
      }
    }));
  }

  private async round(): Promise<void> {
    const now = this.options.now().getTime();
    this.retireSteps(now);
    const observed = await this.observe();
    if (this.stopped) return;
    const writable = observed.filter((one) => one.position !== undefined && !one.position.inRecovery);
    if (writable.length >= 2) {
      await this.splitBrain(writable);
      return;
    }
    const [only] = writable;
    if (only !== undefined && only.node.name !== this.knownPrimary) {
      this.log(`${only.node.name} is the primary${this.knownPrimary === null ? '' : ` now (was ${this.knownPrimary})`}`);
      this.knownPrimary = only.node.name;
      this.persist();
    }
    if (this.knownPrimary === null) {
      this.note('no-primary', `no node has answered as the primary since the watcher started: nothing to fail over from (fail over by hand: pgwarden failover)`);
      return;
    }
    const primary = observed.find((one) => one.node.name === this.knownPrimary);
    const position = primary?.position;
    const result = decide(this.decision, {
      now,
      primary: this.knownPrimary,
      primaryReachable: position !== undefined,
      primaryLastLsn: position !== undefined && !position.inRecovery ? position.receivedLsn : null,
      standbys: observed.filter((one) => one !== primary).map((one) => ({
        name: one.node.name,
        reachable: one.position !== undefined,
        inRecovery: one.position?.inRecovery,
        streaming: one.position?.streaming ?? false,
        timeline: one.position?.timeline ?? null,
        receivedLsn: one.position?.receivedLsn ?? one.position?.replayedLsn ?? null,
      })),
    }, this.cluster.failover);
    const lastReachedAt = this.decision.lastReachedAt;
    this.decision = result.state;
    this.report(result.verdict, primary?.error ?? null);
    const verdict = result.verdict;
    if (verdict.state === 'lost' && verdict.code === 'declared' && verdict.heldOff === null) await this.failover(verdict, lastReachedAt);
  }

  /** Logs a situation once, when it starts. */
  private note(code: string, line: string): void {
    if (this.lastCode === code) return;
    this.lastCode = code;
    this.log(line);
  }

  private report(verdict: Verdict, error: string | null): void {
    const code = verdict.state === 'lost' && verdict.heldOff !== null ? 'held-off' : verdict.code;
    if (code === this.lastCode) return;
    const previous = this.lastCode;
    this.lastCode = code;
    if (verdict.state === 'healthy') {
      if (previous !== undefined && unreachableCodes.has(previous)) this.log(`${this.knownPrimary ?? '?'} answers again`);
      return;
    }
    const why = verdict.reasons.join('; ');
    if (verdict.state === 'suspect') {
      if (verdict.code === 'waiting') this.log(`${this.knownPrimary ?? '?'} does not answer (${redact(error ?? 'no answer')}): ${why}; waiting`);
      else if (verdict.code === 'confirming') this.log(why);
      else this.log(`not failing over: ${why}`);
      return;
    }
    if (verdict.code === 'no-candidate') this.raise(failoverSubjects.lost, 'no-candidate', `${this.knownPrimary ?? '?'} is lost but not failing over: ${why}; a human decides (docs/failover.md "Failover")`);
    else if (verdict.heldOff !== null) this.raise(failoverSubjects.lost, 'held-off', `${this.knownPrimary ?? '?'} is lost but not failing over: ${why}`);
  }

  private async failover(verdict: Extract<Verdict, { state: 'lost' }>, lastReachedAt: number | null): Promise<void> {
    const cluster = this.cluster;
    const oldPrimary = this.knownPrimary ?? '?';
    const declaredAt = Date.now();
    // The next rounds are about the new primary (or the hold-off), not "the old one answers again".
    this.lastCode = 'failover';
    const reached = lastReachedAt === null ? '' : `; last reached ${seconds(declaredAt - lastReachedAt)} ago`;
    this.raise(failoverSubjects.lost, 'declared', `${oldPrimary} declared lost: ${verdict.reasons.join('; ')}${reached}; failing over`, {
      primary: oldPrimary, lastPrimaryLsn: verdict.lastPrimaryLsn, unreachableSince: new Date(verdict.since).toISOString(),
    });
    const holdOffFor = (reason: string): void => {
      this.decision = holdOff(this.decision, this.options.now().getTime(), this.options.holdOffMs, reason);
      this.persist();
    };
    let plan: FailoverPlan;
    try {
      plan = await planFailover({ cluster, reason: 'automatic', lastPrimaryLsn: verdict.lastPrimaryLsn ?? undefined, stateDir: this.options.stateDir });
      if (plan.oldPrimary.name !== oldPrimary) {
        throw new Error(`the standbys name ${plan.oldPrimary.name} as the failed primary, the watcher knew ${oldPrimary}: pgwarden does not guess; nothing was changed`);
      }
    } catch (error) {
      this.raise(failoverSubjects.outcome, 'refused', `automatic failover of ${oldPrimary} refused, nothing was changed: ${errorText(error)}; no new attempt until this alert is acknowledged`, { primary: oldPrimary });
      holdOffFor('automatic failover refused');
      return;
    }
    const candidate = plan.candidate;
    this.raise(failoverSubjects.promotion, 'promoting', `promoting ${candidate.name} (timeline ${candidate.timeline ?? '?'}, received ${candidate.receivedLsn ?? candidate.replayedLsn ?? '?'}, ${formatBytes(candidate.lagBytes)} behind ${plan.reference ?? 'the reference'})`, {
      candidate: candidate.name, timeline: candidate.timeline, receivedLsn: candidate.receivedLsn, lagBytes: candidate.lagBytes,
    });
    try {
      const result = await runFailover(plan, { progress: (line) => this.log(redact(line)), signal: this.abort.signal, startedAt: declaredAt });
      this.knownPrimary = result.newPrimary;
      const sinceDown = lastReachedAt === null ? '' : `, ${seconds(declaredAt - lastReachedAt + result.promotedAfterMs)} after the watcher last reached ${oldPrimary}`;
      const parts = [
        `automatic failover done: ${result.newPrimary} is the primary (timeline ${result.timeline}); it accepted writes ${seconds(result.promotedAfterMs)} after ${oldPrimary} was declared lost${sinceDown}`,
        result.pgbouncerEntries.length > 0 ? `PgBouncer points at ${result.newPrimary} (${result.pgbouncerEntries.join(', ')})` : '',
        result.followed.length > 0 ? `following ${result.newPrimary}: ${result.followed.join(', ')}` : '',
        ...result.notFollowed.map((one) => `NOT following: ${one.node}: ${one.error}`),
        ...result.toRejoin.map((name) => `${name} must be rewound: pgwarden rejoin ${name}`),
        `${oldPrimary} is recorded as deposed: it is fenced and rejoined when it comes back`,
        'no second automatic failover until this alert is acknowledged',
      ];
      this.raise(failoverSubjects.outcome, 'done', redact(parts.filter((part) => part !== '').join('; ')), {
        oldPrimary, newPrimary: result.newPrimary, timeline: result.timeline, promotedAfterMs: result.promotedAfterMs,
      });
      holdOffFor(`automatic failover to ${result.newPrimary}`);
    } catch (error) {
      this.raise(failoverSubjects.outcome, 'failed', `automatic failover of ${oldPrimary} FAILED: ${errorText(error)}; no new attempt until this alert is acknowledged`, { primary: oldPrimary, candidate: candidate.name });
      holdOffFor('automatic failover failed');
    }
  }

  /** Two writable primaries: fence the one fenceTarget names, then rejoin it as a standby. */
  private async splitBrain(writable: readonly Observed[]): Promise<void> {
    const described = writable.map((one) => `${one.node.name} (timeline ${one.position?.timeline ?? '?'})`).join(', ');
    const deposed = await deposedNodes(this.cluster, this.options.stateDir).catch((error: unknown) => {
      this.log(`cannot read the deposed records: ${errorText(error)}`);
      return [];
    });
    const target = fenceTarget({
      primaries: writable.map((one) => ({ name: one.node.name, timeline: one.position?.timeline ?? null })),
      deposed,
    });
    if (target === undefined) {
      this.note('split-brain', `split brain: ${described} accept writes and nothing tells which must stop (same timeline, no deposed record): not fencing; a human decides (docs/failover.md "Fencing and rejoining an old primary")`);
      return;
    }
    const subject = failoverSubjects.fencing(target.node);
    if (this.steps.get(subject)?.failed === true) {
      this.note(`fence-failed ${target.node}`, `split brain: ${described}; fencing ${target.node} failed before: not retried until its alert is acknowledged`);
      return;
    }
    this.lastCode = `fencing ${target.node}`;
    const node = this.cluster.nodes.find((one) => one.name === target.node);
    const newPrimary = this.cluster.nodes.find((one) => one.name === target.keep);
    if (node === undefined || newPrimary === undefined) return;
    this.raise(subject, 'fencing', `split brain: ${described}; fencing ${node.name} (${target.reason}): ${newPrimary.name} stays the primary`, { node: node.name, newPrimary: newPrimary.name });
    const progress = (line: string): void => this.log(redact(line));
    try {
      const fenced = await fenceNode({ cluster: this.cluster, node, newPrimary, progress, signal: this.abort.signal, stateDir: this.options.stateDir });
      if (fenced.how === 'read-only') {
        // A soft fence leaves it out of recovery: fencing it again each round would only terminate sessions again.
        this.raise(subject, 'fenced', `${fenced.message}; it cannot be rewound from here: ${node.name} must be stopped and rejoined on its host (pgwarden rejoin ${node.name} prints the commands); not retried until this alert is acknowledged`, { node: node.name, newPrimary: newPrimary.name }, true);
        return;
      }
      this.raise(subject, 'fenced', `${fenced.message}; rejoining it as a standby of ${newPrimary.name}`, { node: node.name, newPrimary: newPrimary.name });
    } catch (error) {
      this.raise(subject, 'fence-failed', `fencing ${node.name} FAILED: ${errorText(error)}; it may still accept writes: stop it by hand now (docs/failover.md "Fencing and rejoining an old primary"); not retried until this alert is acknowledged`, { node: node.name }, true);
      return;
    }
    try {
      const rejoined = await rejoinNode({ cluster: this.cluster, node, newPrimary, progress, signal: this.abort.signal, stateDir: this.options.stateDir });
      if (rejoined.how === 'manual') {
        this.raise(subject, 'rejoin-manual', `${node.name} is fenced; ${rejoined.message}: ${rejoined.commands.join(' ; ')}`, { node: node.name }, true);
      } else {
        this.raise(subject, 'rejoined', `${node.name} was fenced and rejoined as a standby of ${newPrimary.name}: ${rejoined.message}`, { node: node.name, newPrimary: newPrimary.name });
      }
    } catch (error) {
      this.raise(subject, 'rejoin-failed', `${node.name} is fenced but did not rejoin as a standby: ${errorText(error)}; run pgwarden rejoin ${node.name} when the cause is fixed; not retried until this alert is acknowledged`, { node: node.name }, true);
    }
  }
}

/** The loops of every cluster with automatic failover on; follows config reloads. */
export class AutoFailover {
  private readonly loops = new Map<string, { loop: ClusterLoop; fingerprint: string }>();
  private readonly farewells: Evaluation[] = [];
  private readonly settings: ConstructorParameters<typeof ClusterLoop>[1];

  constructor(options: AutoFailoverOptions) {
    this.settings = {
      ...options,
      now: options.now ?? (() => new Date()),
      intervalMs: options.intervalMs ?? defaultRoundMs,
      probeTimeoutMs: options.probeTimeoutMs ?? defaultProbeTimeoutMs,
      holdOffMs: options.holdOffMs ?? defaultHoldOffMs,
    };
  }

  /** Starts, updates and stops the loops to match the config; returns what changed, for the reload's log line. */
  async configure(config: Config): Promise<string[]> {
    const changes: string[] = [];
    const wanted = new Map(config.clusters.filter(automaticFailover).map((cluster) => [cluster.name, cluster]));
    for (const [name, entry] of [...this.loops]) {
      const cluster = wanted.get(name);
      if (cluster === undefined) {
        await entry.loop.stop();
        this.loops.delete(name);
        // Its alerts resolve: nothing watches over the cluster's failover any more.
        this.farewells.push({ cluster: name, node: clusterWideNode, checks: [failoverCheckId], findings: [] });
        changes.push(`automatic failover off for ${name}`);
      } else if (fingerprint(cluster) !== entry.fingerprint) {
        entry.loop.update(cluster);
        this.loops.set(name, { loop: entry.loop, fingerprint: fingerprint(cluster) });
        changes.push(`automatic failover settings of ${name} changed`);
      }
    }
    for (const [name, cluster] of wanted) {
      if (this.loops.has(name)) continue;
      const loop = new ClusterLoop(cluster, this.settings);
      this.loops.set(name, { loop, fingerprint: fingerprint(cluster) });
      loop.start();
      changes.push(`automatic failover on for ${name}`);
    }
    return changes;
  }

  /** The step findings of every cluster (and the farewells of clusters no longer under automatic failover). */
  evaluations(): Evaluation[] {
    return [...this.farewells.splice(0, this.farewells.length), ...[...this.loops.values()].map((entry) => entry.loop.evaluation())];
  }

  /** The clusters under automatic failover. */
  clusters(): string[] {
    return [...this.loops.keys()];
  }

  /** Stops every loop; a failover in flight is interrupted before its promotion, or finishes its steps after it. */
  async stop(): Promise<void> {
    await Promise.all([...this.loops.values()].map((entry) => entry.loop.stop()));
    this.loops.clear();
  }
}

