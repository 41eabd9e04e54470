// The console shell's backup keys (src/app/App.tsx over src/app/backup-actions.ts): on the Backups
// view b, v and D show a plan (the exact command line) before anything runs; a running job has a
// pane with its lines and elapsed time, a second press says it is running, q and Esc ask before
// stopping it; without a backup plan the keys say why. The desk is the real runner over real child
// processes (a stand-in for bin/pgwarden.js that runs until told to stop).
import { defaultFailover } from '../../src/config/failover.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { render } from 'ink-testing-library';
import { createElement } from 'react';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { App } from '../../src/app/App.js';
import { BackupJobRunner } from '../../src/app/backup-actions.js';
import type { BackupDesk, BackupsView } from '../../src/app/backup-monitor.js';
import type { Monitor, PlanView } from '../../src/app/monitor.js';
import type { BackupsConfig } from '../../src/config/backups.js';
import { effectiveCommands } from '../../src/keymap.js';
import type { Results } from '../../src/probes/runner.js';
import { fixtureNow, plainTheme, resultsIn } from '../fixtures/snapshots.js';

/** Fixture probe results; no database action is planned here. */
const monitor: Monitor = {
  choices: [[{ cluster: 'main', node: 'db1', label: 'postgres@db1:5432/app' }]],
  readOnly: false,
  results: (): Results => resultsIn('ok'),
  subscribe: () => () => undefined,
  setPaused: () => undefined,
  select: () => undefined,
  fullQuery: () => Promise.resolve(null),
  plan: (): Promise<PlanView> => Promise.reject(new Error('no database action in this test')),
  execute: () => Promise.resolve(),
  decline: () => undefined,
  close: () => Promise.resolve(),
};

const backups: BackupsConfig = {
  repositories: [{ name: 'local', spec: { type: 'local', path: '/var/lib/pgwarden/repo' } }],
  keys: [],
  clusters: { '*': { repositories: undefined, compression: 'gzip', schedule: {}, retention: {}, drill: {}, marginMinutes: undefined, streaming: {} } },
};

const emptyRepository: BackupsView = { kind: 'configured', cluster: 'main', encrypted: false, keyProblem: null, reading: false, repositories: [{ name: 'local', description: 'local /var/lib/pgwarden/repo', status: 'loading' }] };

function backupDesk(view: BackupsView): BackupDesk {
  return { view: () => view, subscribe: () => () => undefined, refresh: () => Promise.resolve(), select: () => undefined, close: () => Promise.resolve() };
}

let dir: string;
let script: string;
const runners: BackupJobRunner[] = [];
const instances: { unmount(): void }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgwarden-backup-shell-'));
  script = join(dir, 'fake-pgwarden.mjs');
  // Prints a progress line, then runs until a signal ends it.
  await writeFile(script, "process.stderr.write(`backup X: 12.0 MiB of about 30.0 MiB (40%)\\n`); setInterval(() => undefined, 1000);\n");
});

afterEach(async () => {
  for (const instance of instances.splice(0)) instance.unmount();
  for (const runner of runners.splice(0)) await runner.close();
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function start(options: { readOnly?: boolean; planned?: boolean } = {}) {
  const readOnly = options.readOnly ?? false;
  const jobs = new BackupJobRunner({
    config: { source: join(dir, 'config.json'), backups: options.planned === false ? undefined : backups, clusters: [{ name: 'main', nodes: [], pgbouncer: undefined, failover: defaultFailover }] },
    readOnly, auditPath: join(dir, 'audit.log'), launcher: { execPath: process.execPath, script },
  });
  runners.push(jobs);
  const onQuit = vi.fn();
  const view: BackupsView = options.planned === false ? { kind: 'unconfigured', cluster: 'main' } : emptyRepository;
  const app = render(createElement(App, {
    monitor, theme: plainTheme, commands: effectiveCommands({ readOnly }), columns: 140, rows: 30, now: () => fixtureNow, onQuit,
    initialView: 'backups', backups: backupDesk(view), backupJobs: jobs,
  }));
  instances.push(app);
  const frame = (): string => app.lastFrame() ?? '';
  const press = async (...keys: string[]): Promise<void> => {
    for (const key of keys) {
      app.stdin.write(key);
      await vi.waitFor(() => undefined);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  return { frame, press, onQuit, jobs };
}

const escape = '\u001b';
// eslint-disable-next-line no-control-regex -- matching the escape character is the point
const ansi = /\u001b\[[0-9;]*m/g;

/** The dialog's text, wrapped lines joined back with spaces. */
function dialogText(frame: string): string {
  return frame.replace(ansi, '').split('\n').filter((line) => line.startsWith('│')).map((line) => line.replace(/^│\s?/, '').replace(/\s*│$/, '').trim()).join(' ').replace(/\s+/g, ' ');
}
const waitFrame = (frame: () => string, text: string | RegExp): Promise<void> =>
  vi.waitFor(() => expect(frame().replace(ansi, '')).toMatch(text), { timeout: 10_000, interval: 20 });

describe('backup keys in the console shell', () => {
  it('shows the command line before running, and nothing runs on n', async () => {
    const { frame, press, jobs } = start();
    expect(frame()).toMatch(/b back up {2}v verify {2}D drill/);
    await press('b');
    await waitFrame(frame, 'Back up now');
    expect(dialogText(frame())).toContain(`1. ${process.execPath} ${script} backup --config ${join(dir, 'config.json')} --cluster main --node db1 --fast`);
    expect(dialogText(frame())).toContain('danger: medium');
    await press('n');
    await waitFrame(frame, 'nothing was done');
    expect(jobs.running()).toEqual([]);
  }, 30_000);

  it('runs a job with a pane; a second press, q and Esc do not stop it silently', async () => {
    const { frame, press, onQuit, jobs } = start();
    await press('b');
    await waitFrame(frame, 'Back up now');
    await press('y');
    await waitFrame(frame, /^backup running \S+ · main\/primary db1 → local \(\/var\/lib\/pgwarden\/repo\) · pid \d+ · esc stops it \(asks first\)$/m);
    await waitFrame(frame, /^ {2}backup X: 12\.0 MiB of about 30\.0 MiB \(40%\)$/m);

    await press('v');
    await waitFrame(frame, /a backup job is running on main \(\S+\): one at a time/);

    await press('q');
    await waitFrame(frame, 'Quit: a backup job is running');
    await press('n');
    await vi.waitFor(() => expect(frame()).not.toContain('Quit: a backup job is running'));
    expect(onQuit).not.toHaveBeenCalled();
    expect(jobs.running()).toHaveLength(1);

    await press(escape);
    await waitFrame(frame, 'Stop the running backup job?');
    await press('y');
    await waitFrame(frame, /^backup FAILED after \S+ \(ended by SIGTERM\): stopped on request/m);
    expect(jobs.running()).toEqual([]);
    expect(onQuit).not.toHaveBeenCalled();

    // Nothing runs any more: q quits at once.
    await press('q');
    expect(onQuit).toHaveBeenCalledTimes(1);
  }, 30_000);

  it('q while a job runs quits once confirmed (the console then stops the job)', async () => {
    const { frame, press, onQuit } = start();
    await press('b');
    await waitFrame(frame, 'Back up now');
    await press('y');
    await waitFrame(frame, /^backup running /m);
    await press('q');
    await waitFrame(frame, 'Quit: a backup job is running');
    await press('y');
    expect(onQuit).toHaveBeenCalledTimes(1);
  }, 30_000);

  it('says why the keys cannot run: no backup plan; --read-only refuses backup and drill', async () => {
    const unplanned = start({ planned: false });
    await unplanned.press('b');
    await waitFrame(unplanned.frame, 'refused: no backup plan for cluster main');
    await unplanned.press(escape);
    await vi.waitFor(() => expect(unplanned.frame()).not.toContain('refused:'));
    await unplanned.press('D');
    await waitFrame(unplanned.frame, 'refused: no backup plan for cluster main');

    const readOnly = start({ readOnly: true });
    await readOnly.press('D');
    await waitFrame(readOnly.frame, 'refused: --read-only: a drill switches WAL and writes a restore point on the server');
    await readOnly.press(escape);
    await vi.waitFor(() => expect(readOnly.frame()).not.toContain('refused:'));
    await readOnly.press('v');
    // verify is allowed; here there is no backup to verify yet.
    await waitFrame(readOnly.frame, 'refused: no complete backup listed yet');
  }, 30_000);
});
