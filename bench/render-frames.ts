/**
 * The in-process parts of bench/render: frame time of the Activity screen and of the whole App
 * through Ink, and the App's RSS over thousands of refreshes fed by a fake Monitor. Imports React:
 * load it only after NODE_ENV is set (bench/render.ts does).
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { render, type Instance } from 'ink';
import { createElement, type ReactElement } from 'react';
import { App } from '../src/app/App.js';
import type { ActionProgress, Monitor, PlanView, TargetChoice } from '../src/app/monitor.js';
import { makeTheme } from '../src/components/theme.js';
import { effectiveCommands } from '../src/keymap.js';
import type { ActivitySnapshot } from '../src/probes/activity.js';
import type { Results } from '../src/probes/runner.js';
import { activityScreen } from '../src/screens/Activity.js';
import { connectionsFrom, largeActivity, okResult, resultsIn, screenProps } from '../test/fixtures/snapshots.js';

/** A terminal that swallows what Ink writes, counting frames and bytes. */
export class NullTerminal extends EventEmitter {
  readonly isTTY = true;
  writes = 0;
  bytes = 0;
  constructor(readonly columns: number, readonly rows: number) {
    super();
  }
  write = (chunk: string): boolean => {
    this.writes += 1;
    this.bytes += chunk.length;
    return true;
  };
}

/** A keyboard nobody types on (useInput needs raw mode to exist). */
class QuietKeyboard extends EventEmitter {
  readonly isTTY = true;
  setEncoding(): void {}
  setRawMode(): void {}
  resume(): void {}
  pause(): void {}
  ref(): void {}
  unref(): void {}
  read(): string | null {
    return null;
  }
}

/** A keyboard the benchmark types on, one chunk per type() (as one read from a terminal). */
class Keyboard extends QuietKeyboard {
  private pending: string | null = null;
  override read(): string | null {
    const chunk = this.pending;
    this.pending = null;
    return chunk;
  }
  type(chunk: string): void {
    this.pending = chunk;
    this.emit('readable');
  }
}

/** Timing figures in milliseconds. */
export interface Stats {
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
}

/** Mean, median, 95th percentile and maximum of samples. */
export function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { mean: sorted.reduce((sum, x) => sum + x, 0) / Math.max(sorted.length, 1), p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1] ?? 0 };
}

const base = largeActivity(5000);

/**
 * The 5,000-session snapshot as refresh `tick` would see it: fresh objects (as the probe's parse
 * makes them), ages moving on, a few sessions changing state.
 */
export function activityAt(tick: number, count = 5000): ActivitySnapshot {
  const sessions = (count === 5000 ? base : largeActivity(count)).sessions.map((session, index) => ({
    ...session,
    querySeconds: session.querySeconds === null ? null : session.querySeconds + tick * 2,
    stateSeconds: session.stateSeconds === null ? null : session.stateSeconds + tick * 2,
    state: session.state === 'idle' && (index + tick) % 97 === 0 ? 'active' : session.state,
  }));
  return { sessions, ownSessions: base.ownSessions };
}

/** Every probe ok, the activity (and the connections derived from it) from this snapshot. */
export function resultsFor(activity: ActivitySnapshot): Results {
  return resultsIn('ok', { activity: okResult(activity, new Date()), connections: okResult(connectionsFrom(activity, 6000), new Date()) });
}

/** How the Activity screen renders through Ink, frame after frame, each with a new snapshot. */
export function activityFrames(columns: number, rows: number, frames: number, sessions = 5000): { wall: Stats; cpu: Stats; writesPerFrame: number; bytesPerFrame: number } {
  const terminal = new NullTerminal(columns, rows);
  // The shell gives the screen the terminal less header, tabs, footer and the spare last row.
  const element = (tick: number): ReactElement =>
    createElement(activityScreen.Screen, screenProps('activity', { results: resultsFor(activityAt(tick, sessions)), width: columns, height: rows - 4, theme: makeTheme({ color: true, ascii: false }) }));
  // debug: every commit is written at once (no 30 fps throttle), so a frame is done when rerender() returns.
  const instance = render(element(0), { stdout: terminal as unknown as NodeJS.WriteStream, stdin: new QuietKeyboard() as unknown as NodeJS.ReadStream, debug: true, exitOnCtrlC: false, patchConsole: false });
  const wall: number[] = [];
  const cpu: number[] = [];
  const warmUp = 20;
  const writesBefore = { writes: 0, bytes: 0 };
  for (let tick = 1; tick <= warmUp + frames; tick += 1) {
    const next = element(tick);
    if (tick === warmUp + 1) Object.assign(writesBefore, { writes: terminal.writes, bytes: terminal.bytes });
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    instance.rerender(next);
    const elapsed = performance.now() - start;
    const used = process.cpuUsage(cpuStart);
    if (tick > warmUp) {
      wall.push(elapsed);
      cpu.push((used.user + used.system) / 1000);
    }
  }
  instance.unmount();
  return { wall: stats(wall), cpu: stats(cpu), writesPerFrame: (terminal.writes - writesBefore.writes) / frames, bytesPerFrame: (terminal.bytes - writesBefore.bytes) / frames };
}

/** A Monitor over generated snapshots: refresh() is what the runner's 'refresh' event would be. */
export class FakeMonitor implements Monitor {
  readonly choices: readonly (readonly TargetChoice[])[] = [[{ cluster: 'bench', node: 'db1', label: 'postgres@db1:5432/app' }]];
  readonly readOnly = false;
  private current: Results;
  private readonly listeners = new Set<(results: Results) => void>();
  tick = 0;

  constructor(private readonly sessions = 5000) {
    this.current = resultsFor(activityAt(0, sessions));
  }

  /** Makes the next refresh's snapshot (what the probes' parse would produce). */
  prepare(): void {
    this.tick += 1;
    this.current = resultsFor(activityAt(this.tick, this.sessions));
  }

  /** Hands the prepared results to the App, as the runner's 'refresh' event does. */
  emit(): void {
    for (const listener of this.listeners) listener(this.current);
  }

  results(): Results {
    return this.current;
  }
  subscribe(listener: (results: Results) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
  setPaused(): void {}
  select(): void {}
  fullQuery(): Promise<string | null> {
    return Promise.resolve(null);
  }
  plan(command: string): Promise<PlanView> {
    return Promise.resolve({ id: command, title: command, target: '', danger: 'low', steps: [], confirmToken: null, refused: 'benchmark' });
  }
  execute(planId: string, onProgress: (progress: ActionProgress) => void): Promise<void> {
    onProgress({ steps: [], fraction: null, message: planId, finished: true, ok: false });
    return Promise.resolve();
  }
  decline(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function renderApp(monitor: FakeMonitor, terminal: NullTerminal, debug: boolean, keyboard: QuietKeyboard = new QuietKeyboard(), onRender?: () => void): Instance {
  const element = createElement(App, {
    monitor, theme: makeTheme({ color: true, ascii: false }), commands: effectiveCommands({ readOnly: false }),
    columns: terminal.columns, rows: terminal.rows, initialView: 'activity', onQuit: () => undefined,
  });
  return render(element, {
    stdout: terminal as unknown as NodeJS.WriteStream, stdin: keyboard as unknown as NodeJS.ReadStream, debug, exitOnCtrlC: false, patchConsole: false,
    ...(onRender === undefined ? {} : { onRender }),
  });
}

/**
 * Keypress to frame inside the process, Ink as the console runs it (30 fps throttle): from the
 * key's arrival on stdin to the first write to the terminal after it, with how many times Ink
 * rendered for the key. No terminal, no refreshes: what the App alone adds.
 */
export async function keypressInProcess(columns: number, rows: number, presses: number, sessions = 5000): Promise<{ latency: Stats; rendersPerKey: number }> {
  const monitor = new FakeMonitor(sessions);
  const terminal = new NullTerminal(columns, rows);
  const keyboard = new Keyboard();
  const writes: number[] = [];
  const write = terminal.write;
  terminal.write = (chunk: string): boolean => {
    writes.push(performance.now());
    return write(chunk);
  };
  let renders = 0;
  const instance = renderApp(monitor, terminal, false, keyboard, () => {
    renders += 1;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const latency: number[] = [];
  let rendered = 0;
  for (let i = 0; i < presses; i += 1) {
    const from = writes.length;
    const rendersBefore = renders;
    const start = performance.now();
    keyboard.type(i % 2 === 0 ? 'j' : 'k');
    // Long enough for the throttle's trailing edge and a slow frame.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const first = writes.slice(from).find((at) => at >= start);
    if (first !== undefined) latency.push(first - start);
    rendered += renders - rendersBefore;
  }
  instance.unmount();
  return { latency: stats(latency), rendersPerKey: rendered / presses };
}

/** Lets React run what a state update scheduled (React 19 renders sync updates in a microtask). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The whole App on the Activity view, one refresh at a time: wall and CPU time from the runner's
 * event to the frame written (the snapshot itself is made beforehand), and how many frames each
 * refresh produced (debug mode writes one per commit, so this counts commits).
 */
export async function appRefreshes(columns: number, rows: number, refreshes: number): Promise<{ wall: Stats; cpu: Stats; commitsPerRefresh: number }> {
  const monitor = new FakeMonitor();
  const terminal = new NullTerminal(columns, rows);
  const instance = renderApp(monitor, terminal, true);
  await settle();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < 10; i += 1) {
    monitor.prepare();
    monitor.emit();
    await settle();
  }
  const writes = terminal.writes;
  for (let i = 0; i < refreshes; i += 1) {
    monitor.prepare();
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    monitor.emit();
    await settle();
    wall.push(performance.now() - start);
    const used = process.cpuUsage(cpuStart);
    cpu.push((used.user + used.system) / 1000);
  }
  const commitsPerRefresh = (terminal.writes - writes) / refreshes;
  instance.unmount();
  return { wall: stats(wall), cpu: stats(cpu), commitsPerRefresh };
}

/** One RSS sample. */
export interface RssSample {
  readonly refreshes: number;
  readonly rssMb: number;
  readonly heapMb: number;
  /** What V8 has reserved for the heap (used or not). */
  readonly heapTotalMb: number;
  /** Memory outside the JS heap that V8 knows of (Yoga's WebAssembly memory, buffers). */
  readonly externalMb: number;
  /** What is still reachable after a full collection (run with --expose-gc), or null: what a leak would grow. */
  readonly liveMb: number | null;
}

/**
 * The App as the console runs it (Ink's normal, throttled output) fed a new 5,000-session snapshot
 * every `intervalMs`, sampling memory every `every` refreshes.
 */
export async function rssOverRefreshes(refreshes: number, intervalMs: number, every: number, onSample: (sample: RssSample) => void): Promise<readonly RssSample[]> {
  const monitor = new FakeMonitor();
  const terminal = new NullTerminal(200, 50);
  const instance = renderApp(monitor, terminal, false);
  const samples: RssSample[] = [];
  const sample = (): void => {
    const memory = process.memoryUsage();
    const mb = (bytes: number): number => bytes / 1024 ** 2;
    // Collected after RSS is read, so that RSS is what the process holds on its own.
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const liveMb = gc === undefined ? null : mb(process.memoryUsage().heapUsed);
    const taken = { refreshes: monitor.tick, rssMb: mb(memory.rss), heapMb: mb(memory.heapUsed), heapTotalMb: mb(memory.heapTotal), externalMb: mb(memory.external), liveMb };
    samples.push(taken);
    onSample(taken);
  };
  sample();
  const started = performance.now();
  for (let i = 1; i <= refreshes; i += 1) {
    // Keep the cadence: the next refresh is due intervalMs after the previous one was due.
    const due = started + i * intervalMs;
    const wait = due - performance.now();
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    monitor.prepare();
    monitor.emit();
    if (i % every === 0) sample();
  }
  instance.unmount();
  return samples;
}

/** Least-squares slope of RSS against refreshes, in MB per 1,000 refreshes. */
export function slopePerThousand(samples: readonly RssSample[]): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mx = samples.reduce((sum, s) => sum + s.refreshes, 0) / n;
  const my = samples.reduce((sum, s) => sum + s.rssMb, 0) / n;
  const num = samples.reduce((sum, s) => sum + (s.refreshes - mx) * (s.rssMb - my), 0);
  const den = samples.reduce((sum, s) => sum + (s.refreshes - mx) ** 2, 0);
  return den === 0 ? 0 : (num / den) * 1000;
}
