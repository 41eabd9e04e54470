// The console's alert engine (src/app/alert-monitor.ts) against the shared PostgreSQL: a real
// idle-in-transaction session fires, an unreachable node is critical, an acknowledgement is applied
// at once and lands in the watcher's spool as the watcher reads it, the watcher's silences are taken.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initialEngineState } from '../../src/alerts/engine.js';
import { alertKey } from '../../src/alerts/state.js';
import type { AlertRecord } from '../../src/alerts/types.js';
import { createAlertMonitor, type AlertDesk } from '../../src/app/alert-monitor.js';
import type { AlertsView } from '../../src/app/alerts-view.js';
import { parseConfig } from '../../src/config/load.js';
import { probeIds } from '../../src/probes/index.js';
import { takeCommands } from '../../src/watch/commands.js';
import { saveWatchState } from '../../src/watch/state-file.js';
import { freePort, waitFor } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

const dsn = 'postgresql://postgres@127.0.0.1:5432/test';
let stateDir: string;
let desk: AlertDesk | undefined;
let goneDsn: string;

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'pgwarden-console-alerts-'));
  goneDsn = `postgresql://postgres@127.0.0.1:${await freePort()}/postgres?connect_timeout=2`;
  // A watcher's state with one silence still running and one expired.
  const now = Date.now();
  await saveWatchState(stateDir, {
    engine: {
      ...initialEngineState(),
      silences: [
        { id: 'kept', checkId: 'bloat', startsAt: now - 60_000, endsAt: now + 3_600_000, author: 'bob', comment: 'vacuum tonight' },
        { id: 'over', checkId: 'deadlocks', startsAt: now - 7_200_000, endsAt: now - 60_000, author: 'bob', comment: 'done' },
      ],
    },
    checks: {},
  });
});

afterAll(async () => {
  await desk?.close();
  await closeAll();
  await rm(stateDir, { recursive: true, force: true });
});

/** The view once `check` holds for it, from the engine's own updates. */
function viewWhen(alerts: AlertDesk, what: string, check: (view: AlertsView) => boolean): Promise<AlertsView> {
  return waitFor(what, async () => (check(alerts.view()) ? alerts.view() : undefined), { timeoutMs: 20_000, intervalMs: 50 });
}

describe('the console alert engine', () => {
  it('evaluates every node at its cadence, fires, acknowledges at once and queues for the watcher', async () => {
    const config = parseConfig(
      {
        clusters: [
          { name: 'shared', nodes: [{ name: 'db', dsn }] },
          { name: 'gone', nodes: [{ name: 'down', dsn: goneDsn }] },
        ],
        refresh_ms: 250,
        alerting: { state_dir: stateDir, thresholds: { shared: { 'idle-in-transaction': { warning_seconds: 1, critical_seconds: 3600 } } } },
      },
      'console-alerts.test.json',
      probeIds,
    );
    desk = await createAlertMonitor({ config, cadenceMs: { fast: 300, normal: 300, slow: 300 }, env: { USER: 'ann' } });
    const alerts = desk;
    expect(alerts.view()).toMatchObject({ watcher: true, stateDir, nodes: 2 });
    expect(alerts.view().engine.silences.map((silence) => silence.id)).toEqual(['kept']);

    const session = await openSession(dsn, 'h4-console-alerts');
    const pid = await backendPid(session);
    await session.query('begin; select 1');
    const key = alertKey('shared', 'db', 'idle-in-transaction', `pid ${pid}`);
    const fired = await viewWhen(alerts, 'the idle session to fire', (view) => view.engine.alerts[key]?.status === 'firing');
    const alert = fired.engine.alerts[key] as AlertRecord;
    expect(alert.severity).toBe('warning');
    expect(alert.finding.context).toMatchObject({ sessions: [{ pid, application: 'h4-console-alerts' }] });
    expect(fired.history.some((event) => event.key === key && event.kind === 'firing')).toBe(true);
    expect(fired.evaluatedAt).not.toBeNull();

    // The unreachable node: connectivity, critical, on its own node only.
    const down = await viewWhen(alerts, 'the unreachable node to fire', (view) => view.engine.alerts[alertKey('gone', 'down', 'connectivity', 'cluster')]?.status === 'firing');
    expect(down.engine.alerts[alertKey('gone', 'down', 'connectivity', 'cluster')]?.severity).toBe('critical');

    const id = await alerts.apply({ kind: 'acknowledge', key, by: alerts.author, comment: 'looking' });
    expect(alerts.view().engine.alerts[key]?.acknowledged).toMatchObject({ by: 'ann (console)', comment: 'looking' });
    const taken = await takeCommands(stateDir);
    expect(taken.commands).toEqual([{ id, command: { kind: 'acknowledge', key, by: 'ann (console)', comment: 'looking' } }]);
    expect(await readdir(stateDir)).toEqual(['commands', 'watch-state.json']);

    await session.query('rollback');
    const resolved = await viewWhen(alerts, 'the alert to resolve', (view) => view.engine.alerts[key]?.status === 'resolved');
    expect(resolved.history.find((event) => event.key === key)).toMatchObject({ kind: 'resolved' });
  });
});
