// The console shell with its alert engine: the Alerts view's keys (acknowledge, silence, remove a
// silence) through their prompts, read-only mode, detail pane and toasts. The engine state is a real
// one (test/fixtures/alerts.ts); the desk applies commands with the real applyCommand.
import { render } from 'ink-testing-library';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { applyCommand, type AlertCommand } from '../../src/alerts/commands.js';
import { defaultEngineConfig, stepEngine } from '../../src/alerts/engine.js';
import { alertKey } from '../../src/alerts/state.js';
import type { AlertEvent } from '../../src/alerts/types.js';
import { App } from '../../src/app/App.js';
import type { AlertDesk } from '../../src/app/alert-monitor.js';
import type { AlertsView } from '../../src/app/alerts-view.js';
import type { Monitor } from '../../src/app/monitor.js';
import { effectiveCommands } from '../../src/keymap.js';
import type { Results } from '../../src/probes/runner.js';
import { alertFinding, incidentView } from '../fixtures/alerts.js';
import { fixtureNow, plainTheme, resultsIn } from '../fixtures/snapshots.js';

/** Fixture results, no actions: the alert keys never reach the database. */
class QuietMonitor implements Monitor {
  readonly choices = [[{ cluster: 'prod', node: 'db1', label: 'postgres@db1:5432/app' }]];
  readonly readOnly = false;
  readonly planned: string[] = [];
  results(): Results {
    return resultsIn('ok');
  }
  subscribe(): () => void {
    return () => undefined;
  }
  setPaused(): void {}
  select(): void {}
  fullQuery(): Promise<string | null> {
    return Promise.resolve(null);
  }
  plan(command: string): ReturnType<Monitor['plan']> {
    this.planned.push(command);
    return Promise.resolve({ id: 'p', title: command, target: '-', danger: 'low', steps: [], confirmToken: null, refused: 'not here' });
  }
  execute(): Promise<void> {
    return Promise.resolve();
  }
  decline(): void {}
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** An alert desk over a real engine state: commands applied with applyCommand, their queueing recorded (or refused). */
class FixtureDesk implements AlertDesk {
  readonly author = 'ann (console)';
  readonly applied: AlertCommand[] = [];
  queueError: string | null = null;
  private listener: ((view: AlertsView, events: readonly AlertEvent[]) => void) | undefined;
  private ids = 0;

  constructor(public current: AlertsView) {}
  view(): AlertsView {
    return this.current;
  }
  subscribe(listener: (view: AlertsView, events: readonly AlertEvent[]) => void): () => void {
    this.listener = listener;
    return () => {
      this.listener = undefined;
    };
  }
  push(view: AlertsView, events: readonly AlertEvent[]): void {
    this.current = view;
    this.listener?.(view, events);
  }
  apply(command: AlertCommand): Promise<string> {
    this.applied.push(command);
    this.push({ ...this.current, engine: applyCommand(this.current.engine, command, fixtureNow) }, []);
    return this.queueError === null ? Promise.resolve(`queued-${this.applied.length}`) : Promise.reject(new Error(this.queueError));
  }
  newSilenceId(): string {
    this.ids += 1;
    return `console-${this.ids}`;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const instances: { unmount(): void }[] = [];
afterEach(() => {
  for (const instance of instances.splice(0)) instance.unmount();
});

function start(desk: FixtureDesk, options: { readOnly?: boolean; columns?: number } = {}) {
  const app = render(
    <App
      monitor={new QuietMonitor()}
      alerts={desk}
      theme={plainTheme}
      commands={effectiveCommands({ readOnly: options.readOnly ?? false })}
      columns={options.columns ?? 120}
      rows={40}
      initialView="alerts"
      now={() => fixtureNow}
      onQuit={() => undefined}
    />,
  );
  instances.push(app);
  const frame = (): string => app.lastFrame() ?? '';
  const press = async (...keys: string[]): Promise<void> => {
    for (const key of keys) {
      app.stdin.write(key);
      await vi.waitFor(() => undefined);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  const type = (text: string): Promise<void> => press(...Array.from(text));
  return { frame, press, type };
}

const escape = '\u001b';
const enter = '\r';
const down = '\u001b[B';
const backspace = '\u007f';
const idleKey = alertKey('prod', 'db1', 'idle-in-transaction', 'pid 4242');
const minute = 60_000;

/** The screen line of the row whose subject is this. */
function rowOf(frame: string, check: string): string | undefined {
  return frame.split('\n').find((line) => line.includes(check) && /^[> ](critical|warning|unknown|silence)/.test(line));
}

describe('the Alerts view keys', () => {
  it('acknowledges the selected alert with a comment: applied at once, queued, the row shows it', async () => {
    const desk = new FixtureDesk(incidentView());
    const { frame, press, type } = start(desk);
    await vi.waitFor(() => expect(frame()).toContain('[8 Alerts]'));
    expect(frame().split('\n').at(-1)).toMatch(/a ack {2}m silence {2}u unsilence/);
    await press('a');
    await vi.waitFor(() => expect(frame()).toContain('acknowledge idle-in-transaction pid 4242 on prod/db1'));
    expect(frame()).toContain('comment (optional): _');
    await type('on it');
    await vi.waitFor(() => expect(frame()).toContain('comment (optional): on it_'));
    await press(enter);
    await vi.waitFor(() => expect(frame()).toContain('done: acknowledged idle-in-transaction pid 4242; queued for a watcher'));
    expect(desk.applied).toEqual([{ kind: 'acknowledge', key: idleKey, by: 'ann (console)', comment: 'on it' }]);
    // The alert moved to the silenced or acknowledged section.
    expect(rowOf(frame(), 'idle-in-transaction')).toMatch(/acknowledged by ann/);
    expect(frame()).toContain('silenced or acknowledged (5)');
  });

  it('silences the selected alert for an offered or typed duration, refusing what is not a duration', async () => {
    const desk = new FixtureDesk(incidentView());
    const { frame, press, type } = start(desk);
    await press('m');
    await vi.waitFor(() => expect(frame()).toContain('silence idle-in-transaction pid 4242 on prod/db1'));
    expect(frame()).toContain('for how long: 1h_');
    expect(frame()).toContain('up/down: 15m 1h 4h 1d');
    await press(down);
    await vi.waitFor(() => expect(frame()).toContain('for how long: 4h_'));
    await press(backspace, backspace);
    await type('soon');
    await press(enter);
    await vi.waitFor(() => expect(frame()).toContain('"soon" is not a duration: type e.g. 15m, 1h, 4h, 1d or 2h30m'));
    await press(backspace, backspace, backspace, backspace);
    await type('45m');
    await press(enter);
    await vi.waitFor(() => expect(frame()).toContain('silence idle-in-transaction pid 4242 on prod/db1 for 45m'));
    await type('known batch');
    await press(enter);
    await vi.waitFor(() => expect(frame()).toContain('done: silenced idle-in-transaction pid 4242 for 45m; queued for a watcher'));
    expect(desk.applied).toEqual([{
      kind: 'silence',
      silence: {
        id: 'console-1', cluster: 'prod', node: 'db1', checkId: 'idle-in-transaction', subject: 'pid 4242',
        startsAt: fixtureNow.getTime(), endsAt: fixtureNow.getTime() + 45 * minute, author: 'ann (console)', comment: 'known batch',
      },
    }]);
    expect(rowOf(frame(), 'idle-in-transaction')).toMatch(/silenced to \d\d:\d\d/);
  });

  it('removes the selected silence, and says what a key needs when the row does not fit', async () => {
    const desk = new FixtureDesk(incidentView());
    const { frame, press } = start(desk);
    // Row 4 is the pending lock wait: it cannot be acknowledged.
    await press('j', 'j', 'j');
    await vi.waitFor(() => expect(rowOf(frame(), 'lock-waits')).toMatch(/^>/));
    await press('a');
    await vi.waitFor(() => expect(frame()).toContain('acknowledge needs a selected firing or unknown alert'));
    await press('u');
    await vi.waitFor(() => expect(frame()).toContain('unsilence needs a selected silence, or an alert a silence covers'));
    // Rows 8 and 9 are the silences.
    await press('j', 'j', 'j', 'j', 'j');
    await vi.waitFor(() => expect(frame()).toMatch(/^>silence {2}deadlocks/m));
    await press('u');
    await vi.waitFor(() => expect(frame()).toContain('done: silence removed; queued for a watcher'));
    expect(desk.applied).toEqual([{ kind: 'unsilence', id: 'deadlocks-1' }]);
    expect(frame()).not.toMatch(/silence {2}deadlocks/);
  });

  it('keeps the keys in read-only mode (they change no data) and says when a command could not be queued', async () => {
    const desk = new FixtureDesk(incidentView());
    desk.queueError = 'EACCES: permission denied, mkdir /var/lib/pgwarden/commands';
    const { frame, press } = start(desk, { readOnly: true });
    await press('a', enter);
    await vi.waitFor(() => expect(frame()).toContain('warning: acknowledged idle-in-transaction pid 4242 here, but not queued for a watcher: EACCES'));
    expect(desk.applied).toHaveLength(1);
  });

  it('cancels a prompt with esc, doing nothing', async () => {
    const desk = new FixtureDesk(incidentView());
    const { frame, press } = start(desk);
    await press('m');
    await vi.waitFor(() => expect(frame()).toContain('for how long'));
    await press(escape);
    await vi.waitFor(() => expect(frame()).not.toContain('for how long'));
    expect(desk.applied).toEqual([]);
    expect(frame().split('\n').at(-1)).toContain('a ack');
  });

  it('opens the detail pane of the selected alert with its runbook', async () => {
    const { frame, press } = start(new FixtureDesk(incidentView()));
    await press(enter);
    await vi.waitFor(() => expect(frame()).toContain('critical idle-in-transaction pid 4242 on prod/db1'));
    expect(frame()).toContain('pid 4242  user alice  application billing  client 10.0.0.7');
    expect(frame()).toContain('runbook: docs/alerts.md#idle-in-transaction');
  });

  it('shows a toast when an alert fires while the console is open, and counts it on the Overview', async () => {
    const desk = new FixtureDesk(incidentView());
    const { frame, press } = start(desk);
    await press('1');
    await vi.waitFor(() => expect(frame()).toContain('alerts       1 critical, 4 warning, 1 unknown'));
    const finding = alertFinding('lock-waits', 'pid 777', 'critical', 400, 300);
    const result = stepEngine(desk.current.engine, [{ cluster: 'prod', node: 'db1', findings: [finding] }], defaultEngineConfig([]), fixtureNow);
    desk.push({ ...desk.current, engine: result.state, history: [...result.events, ...desk.current.history] }, result.events);
    await vi.waitFor(() => expect(frame()).toContain('error: CRITICAL alert firing: lock-waits pid 777 on prod/db1: 6m40s / 5m00s'));
    expect(frame()).toContain('alerts       2 critical, 4 warning, 1 unknown');
  });
});
