// The console's own alert engine end to end: the built command line in a real pseudo-terminal
// (tmux) against a throwaway cluster, with low thresholds and check cadences shortened by
// PGWARDEN_CHECK_CADENCE_MS. A real idle-in-transaction session fires an alert; it is toasted,
// listed, acknowledged (and queued in the watcher's spool), and resolves when the session ends.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertKey } from '../../src/alerts/state.js';
import { checkCadenceEnv } from '../../src/app/alert-monitor.js';
import { createPrimary, destroyAll, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { killAll, overwideLines, start } from '../support/terminal.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

let cluster: TestCluster;
let scratch: string;
let stateDir: string;
let configPath: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pgwarden-e2e-alerts-'));
  stateDir = join(scratch, 'state');
  cluster = await createPrimary({ name: 'e2e-alerts' });
  configPath = join(scratch, 'config.json');
  await writeFile(configPath, JSON.stringify({
    refresh_ms: 500,
    clusters: [{ name: 'e2e', nodes: [{ name: 'primary', dsn: cluster.dsn() }] }],
    alerting: {
      state_dir: stateDir,
      thresholds: {
        '*': {
          'idle-in-transaction': { warning_seconds: 1, critical_seconds: 3600 },
          // The cluster was just created: its uptime alert would only crowd the screen.
          restart: { recent_seconds: 1 },
        },
      },
    },
  }));
});

afterAll(async () => {
  await killAll();
  await closeAll();
  await destroyAll();
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

describe('alerts in the console', () => {
  it('toasts a real idle-in-transaction alert, lists it with its pid, acknowledges it (queued for a watcher) and resolves it', async () => {
    const terminal = await start(`node bin/pgwarden.js --audit-log ${join(scratch, 'audit.log')} --config ${configPath}`, {
      columns: 80, rows: 24, cwd: root, env: { [checkCadenceEnv]: '500' },
    });
    await terminal.waitForText(/^pgwarden/);

    const session = await openSession(cluster.dsn(), 'e2e-idle');
    const pid = await backendPid(session);
    await session.query('begin; select 1');

    // Fired while the Overview is shown: a toast, and the count on the Overview.
    const toasted = await terminal.waitForText(`warning: alert firing: idle-in-transaction pid ${pid} on e2e/primary`, 20_000);
    expect(toasted).toMatch(/^alerts {7}0 critical, [1-9]\d* warning/m);
    expect(toasted).toMatch(new RegExp(`^ {13}warning idle-in-transaction pid ${pid} on e2e/primary`, 'm'));

    await terminal.press('8');
    const listed = await terminal.waitForText(new RegExp(`^[> ]warning  idle-in-transaction pid ${pid} +e2e/primary`, 'm'));
    expect(listed).toContain(`no watcher state in ${stateDir}`);
    expect(overwideLines(await terminal.joinedLines(), 80)).toEqual([]);

    // Only this alert's rows: its firing row is then the selected one.
    await terminal.press('/');
    await terminal.waitForText(/^\/_/m);
    await terminal.type('idle-in-transaction');
    await terminal.press('Enter');
    await terminal.waitForText(new RegExp(`^>warning  idle-in-transaction pid ${pid} `, 'm'));

    await terminal.press('a');
    await terminal.waitForText(`acknowledge idle-in-transaction pid ${pid} on e2e/primary`);
    await terminal.type('looking');
    await terminal.waitForText('comment (optional): looking_');
    await terminal.press('Enter');
    const acknowledged = await terminal.waitForText(new RegExp(`idle-in-transaction pid ${pid} +e2e/primary +acknowledged by`));
    expect(acknowledged).toMatch(/^silenced or acknowledged \(1\)$/m);
    // Applied at once; the toast follows once the command is in the spool.
    await terminal.waitForText(`done: acknowledged idle-in-transaction pid ${pid}; queued for a watcher`);

    // The spool of a watcher over the same state directory holds the acknowledgement.
    const spool = join(stateDir, 'commands');
    const files = (await readdir(spool)).filter((name) => name.endsWith('.json'));
    expect(files).toHaveLength(1);
    const queued: unknown = JSON.parse(await readFile(join(spool, files[0]!), 'utf8'));
    expect(queued).toMatchObject({ kind: 'acknowledge', key: alertKey('e2e', 'primary', 'idle-in-transaction', `pid ${pid}`), comment: 'looking' });

    await session.query('rollback');
    const resolved = await terminal.waitForScreen(
      'the alert resolved',
      (screen) => new RegExp(`^[> ]\\d\\d:\\d\\d:\\d\\d resolved +warning +idle-in-transaction pid ${pid}`, 'm').test(screen) && !screen.includes('acknowledged by'),
      20_000,
    );
    expect(resolved).toMatch(/^firing \(0\)$/m);
    expect(resolved).toMatch(/^ no firing alert matches the filter$/m);

    await terminal.press('q');
    expect(await terminal.waitForExit()).toBe(0);
    // The console writes nothing else there: the state file is the watcher's alone.
    expect(await readdir(stateDir)).toEqual(['commands']);
  });
});
