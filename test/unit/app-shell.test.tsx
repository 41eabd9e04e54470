import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { App } from '../../src/app/App.js';
import type { ActionProgress, Monitor, PlanView } from '../../src/app/monitor.js';
import { effectiveCommands } from '../../src/keymap.js';
import type { Results } from '../../src/probes/runner.js';
import type { Selection } from '../../src/screens/types.js';
import { fixtureNow, plainTheme, resultsIn } from '../fixtures/snapshots.js';

/** A monitor fed with fixture snapshots: the data source of the shell, without a server. */
class FixtureMonitor implements Monitor {
  readonly choices = [[{ cluster: 'prod', node: 'db1', label: 'postgres@db1:5432/app' }, { cluster: 'prod', node: 'db2', label: 'postgres@db2:5432/app' }]];
  readonly planned: { command: string; selection: Selection; tagged: readonly number[] }[] = [];
  readonly declined: string[] = [];
  readonly executed: string[] = [];
  selected: [number, number] = [0, 0];
  paused = false;
  private listener: ((results: Results) => void) | undefined;

  constructor(public current: Results, readonly readOnly = false) {}
  results(): Results {
    return this.current;
  }
  subscribe(listener: (results: Results) => void): () => void {
    this.listener = listener;
    return () => {
      this.listener = undefined;
    };
  }
  push(results: Results): void {
    this.current = results;
    this.listener?.(results);
  }
  setPaused(paused: boolean): void {
    this.paused = paused;
  }
  select(cluster: number, node: number): void {
    this.selected = [cluster, node];
  }
  fullQuery(): Promise<string | null> {
    return Promise.resolve('select * from a_very_long_query_text');
  }
  plan(command: string, selection: Selection, tagged: readonly number[]): Promise<PlanView> {
    this.planned.push({ command, selection, tagged });
    return Promise.resolve({
      id: `plan-${this.planned.length}`,
      title: 'Terminate pid 101',
      target: 'pid 101 (alice@app, psql)',
      danger: 'medium',
      steps: [{ description: 'terminate it', sql: 'SELECT pg_terminate_backend(101)' }],
      confirmToken: null,
      refused: null,
    });
  }
  execute(planId: string, onProgress: (progress: ActionProgress) => void): Promise<void> {
    this.executed.push(planId);
    onProgress({ steps: [{ description: 'terminate it', status: 'done', message: 'returned true' }], fraction: 1, message: 'pid 101 is gone', finished: true, ok: true });
    return Promise.resolve();
  }
  decline(planId: string): void {
    this.declined.push(planId);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const instances: { unmount(): void }[] = [];
afterEach(() => {
  for (const instance of instances.splice(0)) instance.unmount();
});

function start(monitor: FixtureMonitor, options: { readOnly?: boolean; columns?: number; rows?: number } = {}) {
  const onQuit = vi.fn();
  const app = render(
    <App
      monitor={monitor}
      theme={plainTheme}
      commands={effectiveCommands({ readOnly: options.readOnly ?? false })}
      columns={options.columns ?? 100}
      rows={options.rows ?? 30}
      now={() => fixtureNow}
      onQuit={onQuit}
    />,
  );
  instances.push(app);
  const frame = (): string => app.lastFrame() ?? '';
  const press = async (...keys: string[]): Promise<void> => {
    for (const key of keys) {
      app.stdin.write(key);
      // One key at a time, as a person types: let the shell render before the next.
      await vi.waitFor(() => undefined);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  return { app, frame, press, onQuit };
}

const escape = '\u001b';
const enter = '\r';

describe('console shell', () => {
  it('fits the terminal minus one line, with header, tabs and footer hints', () => {
    const { frame } = start(new FixtureMonitor(resultsIn('ok')), { columns: 80, rows: 24 });
    const lines = frame().split('\n');
    expect(lines.length).toBeLessThanOrEqual(23);
    expect(lines[0]).toMatch(/^pgwarden/);
    expect(lines[1]).toContain('[1 Overview]');
    expect(lines.at(-1)).toContain('q quit');
    expect(lines.every((line) => line.length <= 80)).toBe(true);
  });

  it('switches views with number keys, Tab and the palette', async () => {
    const { frame, press } = start(new FixtureMonitor(resultsIn('ok')));
    await press('2');
    await vi.waitFor(() => expect(frame()).toContain('[2 Activity]'));
    await press('\t');
    await vi.waitFor(() => expect(frame()).toContain('[3 Pool]'));
    await press(':', 'b', 'l', 'o', 'a', 't', enter);
    await vi.waitFor(() => expect(frame()).toContain('[5 Tables]'));
    await press(':', 'x', 'y', 'z', enter);
    await vi.waitFor(() => expect(frame()).toContain('no view named "xyz"'));
    await press(escape);
    await vi.waitFor(() => expect(frame()).not.toContain('no view named'));
  });

  it('takes typed-ahead keys one by one, each in the view the previous one opened', async () => {
    const { frame, press } = start(new FixtureMonitor(resultsIn('ok')));
    await press('2jj');
    // The two j moved the cursor in Activity (opened by the 2 before them): third row selected.
    await vi.waitFor(() => {
      expect(frame()).toContain('[2 Activity]');
      const rows = frame().split('\n').filter((line) => /^[> ]\s*\d+ /.test(line));
      expect(rows.findIndex((line) => line.startsWith('>'))).toBe(2);
    });
    expect(frame().split('\n').filter((line) => line.startsWith('>'))).toHaveLength(1);
  });

  it('keeps keys typed faster than the screen redraws in order, prompts included', async () => {
    const { frame, app } = start(new FixtureMonitor(resultsIn('ok')));
    app.stdin.write(':locks\r');
    await vi.waitFor(() => expect(frame()).toContain('[4 Locks]'));
    app.stdin.write('/zzz-nothing\r');
    await vi.waitFor(() => expect(frame()).not.toMatch(/^>/m));
  });

  it('plans a terminate on the selected session, shows the SQL, and runs it only on y', async () => {
    const monitor = new FixtureMonitor(resultsIn('ok'));
    const { frame, press } = start(monitor);
    await press('2', 'K');
    await vi.waitFor(() => expect(frame()).toContain('SELECT pg_terminate_backend(101)'));
    expect(monitor.planned[0]).toMatchObject({ command: 'session.terminate', selection: { kind: 'session' } });
    expect(monitor.executed).toEqual([]);
    await press('n');
    await vi.waitFor(() => expect(monitor.declined).toEqual(['plan-1']));
    await press('K');
    await vi.waitFor(() => expect(frame()).toContain('press y to run'));
    await press('y');
    await vi.waitFor(() => expect(frame()).toContain('pid 101 is gone'));
    expect(monitor.executed).toEqual(['plan-2']);
  });

  it('offers no dangerous command in read-only mode', async () => {
    const monitor = new FixtureMonitor(resultsIn('ok'), true);
    const { frame, press } = start(monitor, { readOnly: true });
    await press('2', 'K', 'x');
    await vi.waitFor(() => expect(frame()).toContain('[2 Activity]'));
    expect(monitor.planned).toEqual([]);
    expect(frame()).not.toContain('terminate');
  });

  it('re-renders once per refresh with the new results, and pauses the runner on p', async () => {
    const monitor = new FixtureMonitor(resultsIn('pending'));
    const { frame, press } = start(monitor);
    expect(frame()).toContain('waiting for');
    monitor.push(resultsIn('ok'));
    await vi.waitFor(() => expect(frame()).toContain('primary'));
    await press('p');
    await vi.waitFor(() => expect(monitor.paused).toBe(true));
    expect(frame()).toContain('paused');
  });

  it('opens the detail pane with the full query fetched on demand, and the help overlay', async () => {
    const { frame, press } = start(new FixtureMonitor(resultsIn('ok')));
    await press('2', enter);
    await vi.waitFor(() => expect(frame()).toContain('select * from a_very_long_query_text'));
    await press(escape, '?');
    await vi.waitFor(() => expect(frame()).toContain('Key bindings'));
    await press(escape);
    await vi.waitFor(() => expect(frame()).not.toContain('Key bindings'));
  });

  it('switches node through the switcher', async () => {
    const monitor = new FixtureMonitor(resultsIn('ok'));
    const { frame, press } = start(monitor);
    await press('c');
    await vi.waitFor(() => expect(frame()).toContain('Switch to'));
    await press('j', enter);
    await vi.waitFor(() => expect(monitor.selected).toEqual([0, 1]));
    expect(frame()).toContain('prod / db2');
  });

  it('says when the connection is lost, keeps the stale data, and clears it once the server answers', async () => {
    const monitor = new FixtureMonitor(resultsIn('ok'));
    const { frame } = start(monitor);
    monitor.push(resultsIn('ok'));
    await vi.waitFor(() => expect(frame()).toContain('primary'));
    monitor.push(resultsIn('error'));
    await vi.waitFor(() => expect(frame()).toContain('connection lost: connection lost: server closed the connection unexpectedly — retrying on its own'));
    monitor.push(resultsIn('ok'));
    await vi.waitFor(() => expect(frame()).not.toContain('connection lost'));
  });

  it('quits on q', async () => {
    const { press, onQuit } = start(new FixtureMonitor(resultsIn('ok')));
    await press('q');
    await vi.waitFor(() => expect(onQuit).toHaveBeenCalledTimes(1));
  });
});
