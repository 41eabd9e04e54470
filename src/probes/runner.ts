/**
 * The runner schedules probes for one node: each at its own cadence, never overlapping itself,
 * with a timeout and exponential back-off after errors. It keeps the last good snapshot of each
 * probe and emits one event per refresh with every result, so consumers re-render once.
 */
import { EventEmitter } from 'node:events';
import type { ProbeSettings } from '../config/types.js';
import { runProbe, type ProbeTargets } from './run-probe.js';
import type { Probe, ProbeId, ProbeInputs, ProbeResult, Stamped } from './types.js';

export type AnyProbe = Probe<unknown>;
export type Results = ReadonlyMap<ProbeId, ProbeResult<unknown>>;

export interface RunnerOptions {
  readonly refreshMs: number;
  /** Default per-probe timeout (the statement_timeout). */
  readonly timeoutMs: number;
  readonly settings?: Readonly<Record<string, ProbeSettings>>;
  readonly now?: () => Date;
}

interface ProbeState {
  readonly probe: AnyProbe;
  readonly cadenceMs: number;
  readonly timeoutMs: number;
  result: ProbeResult<unknown>;
  last: Stamped<unknown> | undefined;
  running: Promise<void> | undefined;
  dueAt: number;
  failures: number;
}

const maxBackoffMs = 60_000;

export class ProbeRunner extends EventEmitter<{ refresh: [Results]; }> {
  private readonly states = new Map<ProbeId, ProbeState>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private stopped = true;
  private paused = false;

  constructor(probes: readonly AnyProbe[], private readonly targets: ProbeTargets, private readonly options: RunnerOptions) {
    super();
    for (const probe of probes) {
      const settings = options.settings?.[probe.id];
      if (settings?.enabled === false) continue;
      this.states.set(probe.id, {
        probe,
        cadenceMs: Math.max(settings?.cadenceMs ?? probe.cadenceMs, options.refreshMs),
        timeoutMs: settings?.timeoutMs ?? options.timeoutMs,
        result: { status: 'pending' },
        last: undefined,
        running: undefined,
        dueAt: 0,
        failures: 0,
      });
    }
  }

  /** The current result of every enabled probe. */
  results(): Results {
    return new Map([...this.states].map(([id, state]) => [id, state.result]));
  }

  /** Snapshots of this probe's inputs taken since `since` (this refresh), by probe id. */
  private inputsFor(state: ProbeState, since: number): ProbeInputs {
    const inputs: Partial<Record<ProbeId, unknown>> = {};
    for (const id of state.probe.inputs ?? []) {
      const input = this.states.get(id)?.result;
      if (input?.status === 'ok' && input.at.getTime() >= since) inputs[id] = input.snapshot;
    }
    return inputs;
  }

  private runOne(state: ProbeState, since: number): Promise<void> {
    state.running ??= (async () => {
      // Cadence counts from the start of a run, so a 2 s probe runs every 2 s, not every 2 s + its duration.
      const started = Date.now();
      // A probe that reads others waits for them when they run in this refresh.
      await Promise.all((state.probe.inputs ?? []).flatMap((id) => this.states.get(id)?.running ?? []));
      const result = await runProbe(state.probe, this.targets, {
        timeoutMs: state.timeoutMs,
        previous: state.last,
        inputs: this.inputsFor(state, since),
        ...(this.options.now ? { now: this.options.now } : {}),
      });
      state.result = result;
      if (result.status === 'ok') {
        state.last = { snapshot: result.snapshot, at: result.at };
        state.failures = 0;
        state.dueAt = started + state.cadenceMs;
      } else if (result.status === 'error') {
        state.failures += 1;
        state.dueAt = started + Math.min(maxBackoffMs, Math.max(state.cadenceMs, this.options.refreshMs * 2 ** state.failures));
      } else {
        // Unsupported rarely changes (an extension installed, a grant given): look again slowly.
        state.dueAt = started + Math.max(state.cadenceMs, 30_000);
      }
    })().finally(() => {
      state.running = undefined;
    });
    return state.running;
  }

  /**
   * Runs every due probe (or the given ones, due or not) and resolves with all results once they
   * have finished, or at the refresh deadline, whichever comes first. Slow probes still running
   * then report at a later refresh.
   */
  async refresh(only?: readonly ProbeId[]): Promise<Results> {
    // Ticks drift by a few milliseconds: a probe due within half a refresh runs now rather than a
    // whole refresh late.
    const since = Date.now();
    const horizon = since + this.options.refreshMs / 2;
    const due = [...this.states].filter(([id, state]) => (only !== undefined ? only.includes(id) : state.dueAt <= horizon || state.running !== undefined));
    // Inputs first, so that their runs exist when the probes reading them start waiting.
    due.sort(([, a], [, b]) => (a.probe.inputs?.length ?? 0) - (b.probe.inputs?.length ?? 0));
    const runs = due.map(([, state]) => this.runOne(state, since));
    if (only !== undefined) {
      await Promise.all(runs);
    } else {
      let deadline: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(runs),
        new Promise<void>((resolve) => {
          deadline = setTimeout(resolve, this.options.refreshMs);
        }),
      ]);
      clearTimeout(deadline);
    }
    const results = this.results();
    this.emit('refresh', results);
    return results;
  }

  /** Starts refreshing every refreshMs until stop(). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const loop = async (): Promise<void> => {
      if (this.stopped) return;
      const started = Date.now();
      if (!this.paused && !this.ticking) {
        this.ticking = true;
        try {
          await this.refresh();
        } finally {
          this.ticking = false;
        }
      }
      if (this.stopped) return;
      this.timer = setTimeout(() => void loop(), Math.max(0, this.options.refreshMs - (Date.now() - started)));
    };
    void loop();
  }

  /** Pauses scheduling (the console's "p"); results stay as they are. */
  setPaused(paused: boolean): void {
    this.paused = paused;
  }

  /** Stops scheduling and waits for probes in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.all([...this.states.values()].flatMap((state) => (state.running === undefined ? [] : [state.running])));
  }
}
