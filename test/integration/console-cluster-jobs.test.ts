// Switchover and failover from the console's Replication view, end to end (issue 6 items 3 and 4):
// the built console in a real pseudo-terminal (tmux) over a real primary, two standbys and a real
// PgBouncer (test/support/failover-cluster.ts). F while the primary is up shows the refusal that
// `pgwarden failover --dry-run` gives; W on a standby shows the plan `pgwarden switchover --dry-run`
// prints, refuses a wrong name, runs once the standby's name is typed, shows its progress under
// the tree, and the standby is then the primary with PgBouncer pointing at it. The audit log has
// the command line and the outcome.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFailoverCluster, queryDsn, roleOf, type FailoverCluster } from '../support/failover-cluster.js';
import { waitFor } from '../support/cluster.js';
import { dialogText, killAll, start, type Terminal, waitForDialog } from '../support/terminal.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
let fixture: FailoverCluster;
let home: string;
let auditPath: string;

async function auditEntries(): Promise<Record<string, unknown>[]> {
  const text = await readFile(auditPath, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The console on p1's Replication view, once both standbys are listed. */
async function console(): Promise<Terminal> {
  const terminal = await start(`${process.execPath} bin/pgwarden.js --config ${fixture.configPath} --audit-log ${auditPath}`, { columns: 200, rows: 50, cwd: root });
  await terminal.waitForText(/^pgwarden/, 20_000);
  await terminal.press('6');
  await terminal.waitForScreen('both standbys listed', (screen) => /^[> ]s1 /m.test(screen) && /^[> ]s2 /m.test(screen), 20_000);
  return terminal;
}

beforeAll(async () => {
  fixture = await createFailoverCluster({ name: 'console-jobs' });
  home = await mkdtemp(join(tmpdir(), 'pgwarden-console-cluster-jobs-'));
  auditPath = join(home, 'audit.log');
});

afterAll(async () => {
  await killAll();
  await fixture?.cleanup();
  if (home !== undefined) await rm(home, { recursive: true, force: true });
});

describe('the Replication view\'s cluster keys', () => {
  it('F while the primary answers: the dry run\'s refusal, and nothing is done', async () => {
    const terminal = await console();
    await terminal.press('F');
    expect(await waitForDialog(terminal, /refused/i, 30_000)).toMatch(/p1/);
    await terminal.press('Escape');
    expect((await roleOf(fixture.node('p1'))).inRecovery).toBe(false);
    await terminal.kill();
  });

  it('W on s1: the plan, a typed confirmation, progress, and s1 is the primary behind PgBouncer', async () => {
    const terminal = await console();
    await terminal.press('/');
    await terminal.waitForText(/^\/_/m);
    await terminal.type('s1');
    await terminal.press('Enter');
    await terminal.waitForScreen('s1 selected alone', (text) => /^>s1 /m.test(text) && !/^[> ]s2 /m.test(text));
    await terminal.press('W');
    // Taller than the window: its bottom border is off screen, so the prompt under the plan marks it whole.
    const plan = dialogText(await terminal.waitForScreen('the switchover plan', (text) => /Its plan, as the dry run prints it.*type s1 to confirm/.test(dialogText(text)), 30_000));
    expect(plan).toContain(`switchover --config ${fixture.configPath} --cluster main --to s1 --yes`);
    expect(plan).toMatch(/pg_promote/);
    expect(plan).toMatch(/type s1/i);

    // A wrong name does nothing; the right one runs it.
    await terminal.type('s2');
    await terminal.press('Enter');
    await terminal.waitForText('type s1 exactly to confirm');
    await terminal.press('BSpace');
    await terminal.waitForText('type s1 to confirm: s_');
    await terminal.press('BSpace');
    await terminal.waitForText('type s1 to confirm: _');
    await terminal.type('s1');
    await terminal.waitForText('type s1 to confirm: s1_');
    await terminal.press('Enter');
    await terminal.waitForText(/switchover running/, 20_000);
    await terminal.waitForText(/switchover finished/, 180_000);

    expect((await roleOf(fixture.node('s1'))).inRecovery).toBe(false);
    await waitFor('p1 to stream from s1', async () => (await roleOf(fixture.node('p1'))).upstreamPort === fixture.node('s1').port, { timeoutMs: 60_000 });
    const [through] = await queryDsn(fixture.appDsn(), 'select inet_server_port() as port, pg_is_in_recovery() as standby');
    expect(through).toEqual({ port: fixture.node('s1').port, standby: false });

    const entries = await auditEntries();
    const ran = entries.find((entry) => entry['action'] === 'cluster.switchover' && entry['outcome'] === 'ok');
    expect(ran?.['sql']).toEqual([expect.stringContaining('switchover --config')]);
    await terminal.kill();
  }, 300_000);
});
