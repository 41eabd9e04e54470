// Backup jobs from the console (src/app/backup-actions.ts): the plans (the exact command lines,
// keys only as files and variables, refusals under --read-only and without a plan), the job state
// machine (stderr lines, stop, outcomes), and the runner over real child processes (one job per
// cluster, stop asks the whole process group, every job audited).
import { defaultFailover } from '../../src/config/failover.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupJobPlan, BackupJobRunner, busyMessage, commandLineOf, jobStep, newJob, passwordFreeDsn, shellQuote, stopPlanView,
  type BackupJob, type BackupJobPlan, type JobEvent, type JobSource,
} from '../../src/app/backup-actions.js';
import type { BackupEntry, BackupsView } from '../../src/app/backup-monitor.js';
import { resolveBackupPlan, type BackupsConfig, type ClusterBackupSettings } from '../../src/config/backups.js';
import type { ConnectionSpec } from '../../src/config/types.js';
import { waitFor } from '../support/cluster.js';

const defaults: ClusterBackupSettings = { repositories: undefined, compression: undefined, schedule: {}, retention: {}, drill: {}, marginMinutes: undefined, streaming: {} };
const backups: BackupsConfig = {
  repositories: [
    { name: 'local', spec: { type: 'local', path: '/var/lib/pgwarden/repo' } },
    { name: 'offsite', spec: { type: 's3', endpoint: undefined, region: 'eu-west-1', bucket: 'backups', prefix: 'main', forcePathStyle: false, conditionalWrites: true, credentialsEnv: undefined } },
  ],
  keys: [{ id: '2026-11', file: '/etc/pgwarden/keys/2026-11.key' }, { id: '2026-05', env: 'PGWARDEN_OLD_KEY' }],
  clusters: { '*': { ...defaults, compression: 'zstd', drill: { tables: ['public.orders'], targetDir: '/srv/drills' } } },
};
const connection: ConnectionSpec = {
  host: 'db1.example', port: 5433, user: 'backup', database: 'postgres', password: 'hunter2-secret', sslmode: 'require', sslrootcert: undefined, connectTimeoutMs: 5000,
};
const launcher = { execPath: '/usr/bin/node', script: '/opt/pgwarden/bin/pgwarden.js' };

function entry(repository: string, id: string, finishedAt: string): BackupEntry {
  return {
    repository, id, finishedAt, storedBytes: 1, originalBytes: 1, durationMs: 1, node: 'db1', fromStandby: false,
    verified: null, drilled: null, restorable: true, problem: null,
  };
}

const older = entry('local', '20261101T030000Z-full', '2026-11-01T03:10:00Z');
const newer = entry('offsite', '20261102T030000Z-full', '2026-11-02T03:10:00Z');
const view = {
  kind: 'configured', cluster: 'main', encrypted: true, keyProblem: null, reading: false,
  repositories: [
    { name: 'local', description: 'local /var/lib/pgwarden/repo', status: 'ok', readAt: new Date(), catalog: {} as never, window: {} as never, backups: [older], drills: [] },
    { name: 'offsite', description: 's3://backups/main', status: 'ok', readAt: new Date(), catalog: {} as never, window: {} as never, backups: [newer], drills: [] },
  ],
} as const satisfies BackupsView;

function source(overrides: Partial<JobSource> = {}): JobSource {
  return {
    kind: 'backup', configFile: '/etc/pgwarden/config.json', dsn: undefined, plan: resolveBackupPlan({ backups }, 'main'),
    cluster: 'main', node: 'db1', role: 'primary', readOnly: false, selected: undefined, view, launcher, ...overrides,
  };
}

describe('job plans: the exact command line', () => {
  it('backs up the console\'s cluster and node through its config, with a fast checkpoint, medium danger', () => {
    const plan = backupJobPlan(source());
    expect(plan.refused).toBeNull();
    expect(plan.danger).toBe('medium');
    expect(plan.confirmToken).toBeNull();
    expect(plan.commandLine).toBe('/usr/bin/node /opt/pgwarden/bin/pgwarden.js backup --config /etc/pgwarden/config.json --cluster main --node db1 --fast');
    expect(plan.args).toEqual(['/opt/pgwarden/bin/pgwarden.js', 'backup', '--config', '/etc/pgwarden/config.json', '--cluster', 'main', '--node', 'db1', '--fast']);
    expect(plan.steps[0]).toMatchObject({ command: plan.commandLine });
    expect(plan.steps[0]?.description).toContain('a fast checkpoint on the primary: a burst of I/O');
    expect(plan.steps[0]?.description).toContain('then copied to offsite (s3://backups/main)');
    expect(plan.target).toBe('main/primary db1 → local (/var/lib/pgwarden/repo), copied to offsite');
    expect(plan.env).toEqual({});
  });

  it('says a standby takes a restartpoint, not the primary a checkpoint', () => {
    const plan = backupJobPlan(source({ role: 'standby', node: 'db2' }));
    expect(plan.steps[0]?.description).toContain('a fast restartpoint on the standby');
    expect(plan.commandLine).toContain('--node db2');
  });

  it('with --dsn: the same server without its password (PGPASSWORD in the child\'s environment) and the keys as files and variables', () => {
    const plan = backupJobPlan(source({ dsn: connection }));
    expect(plan.commandLine).toBe(
      "/usr/bin/node /opt/pgwarden/bin/pgwarden.js backup --dsn 'host=db1.example port=5433 user=backup dbname=postgres sslmode=require' --repo /var/lib/pgwarden/repo "
      + '--key 2026-11=/etc/pgwarden/keys/2026-11.key --key-env 2026-05=PGWARDEN_OLD_KEY --compression zstd --fast',
    );
    expect(plan.commandLine).not.toContain('hunter2');
    expect(JSON.stringify(plan.steps)).not.toContain('hunter2');
    expect(plan.env).toEqual({ PGPASSWORD: 'hunter2-secret' });
  });

  it('verifies the selected backup, else the newest of every repository, low danger, through the config\'s repository name', () => {
    const selected = backupJobPlan(source({ kind: 'verify', selected: older }));
    expect(selected.danger).toBe('low');
    expect(selected.commandLine).toBe('/usr/bin/node /opt/pgwarden/bin/pgwarden.js verify 20261101T030000Z-full --config /etc/pgwarden/config.json --cluster main --repo local');
    expect(selected.target).toBe('backup 20261101T030000Z-full in local (/var/lib/pgwarden/repo)');
    const newest = backupJobPlan(source({ kind: 'verify' }));
    expect(newest.commandLine).toContain('verify 20261102T030000Z-full --config /etc/pgwarden/config.json --cluster main --repo offsite');
    expect(newest.target).toContain('(the newest)');
    expect(newest.steps[0]?.description).toContain('the server is not touched');
  });

  it('drills the selected backup\'s repository (or the first), medium danger, and names what it checks', () => {
    const plan = backupJobPlan(source({ kind: 'drill', selected: newer }));
    expect(plan.danger).toBe('medium');
    expect(plan.commandLine).toBe('/usr/bin/node /opt/pgwarden/bin/pgwarden.js drill --config /etc/pgwarden/config.json --cluster main --repo offsite');
    expect(plan.steps[0]?.description).toContain('under /srv/drills');
    expect(plan.steps[0]?.description).toContain('public.orders');
    expect(backupJobPlan(source({ kind: 'drill', dsn: connection })).commandLine).toBe(
      "/usr/bin/node /opt/pgwarden/bin/pgwarden.js drill --repo /var/lib/pgwarden/repo --key 2026-11=/etc/pgwarden/keys/2026-11.key --key-env 2026-05=PGWARDEN_OLD_KEY --dsn 'host=db1.example port=5433 user=backup dbname=postgres sslmode=require'",
    );
  });

  it('refuses backup and drill under --read-only, but not verify', () => {
    expect(backupJobPlan(source({ readOnly: true })).refused).toBe('--read-only: a backup runs a checkpoint and pg_backup_start on the server (verify is allowed)');
    expect(backupJobPlan(source({ kind: 'drill', readOnly: true })).refused).toContain('--read-only: a drill switches WAL and writes a restore point');
    expect(backupJobPlan(source({ kind: 'verify', readOnly: true })).refused).toBeNull();
  });

  it('says why nothing can run without a backup plan, without a backup, or with S3 under --dsn', () => {
    for (const kind of ['backup', 'verify', 'drill'] as const) {
      const plan = backupJobPlan(source({ kind, plan: undefined }));
      expect(plan.refused).toMatch(/^no backup plan for cluster main: add a "backups" section/);
      expect(plan.args).toEqual([]);
    }
    expect(backupJobPlan(source({ kind: 'verify', view: { kind: 'unconfigured', cluster: 'main' } })).refused).toBe('no complete backup listed yet: take one first (back up now)');
    expect(backupJobPlan(source({ kind: 'verify', dsn: connection, selected: newer })).refused).toContain('repository offsite is on S3');
  });

  it('quotes for a shell only what needs it, and builds password-free DSNs', () => {
    expect(shellQuote('/a/b-c_d.e')).toBe('/a/b-c_d.e');
    expect(shellQuote("it's here")).toBe("'it'\\''s here'");
    expect(shellQuote('')).toBe("''");
    expect(commandLineOf('/usr/bin/node', ['x y', 'z'])).toBe("/usr/bin/node 'x y' z");
    expect(passwordFreeDsn({ ...connection, database: 'my db', sslrootcert: '/etc/ca.pem' })).toBe("host=db1.example port=5433 user=backup dbname='my db' sslmode=require sslrootcert=/etc/ca.pem");
  });
});

describe('the job state machine', () => {
  const plan = backupJobPlan(source());
  const start = new Date('2026-11-27T10:00:00Z');
  const run = (events: readonly JobEvent[], kind: BackupJobPlan['kind'] = 'backup'): BackupJob => events.reduce(jobStep, newJob({ ...plan, kind }, start));
  const exit = (code: number | null, signal: string | null = null): JobEvent => ({ type: 'exit', code, signal, at: new Date(start.getTime() + 42_000) });

  it('turns stderr chunks into lines, whatever the chunking, and keeps the unfinished one apart', () => {
    const job = run([{ type: 'spawned', pid: 4242 }, { type: 'stderr', text: 'backup X: fro' }, { type: 'stderr', text: 'm primary db1\nbackup X: 1 MiB' }]);
    expect(job).toMatchObject({ status: 'running', pid: 4242, lines: ['backup X: from primary db1'], partial: 'backup X: 1 MiB' });
    expect(busyMessage(job, new Date(start.getTime() + 5000))).toBe('a backup job is running on main (5.0s): one at a time; wait for it, or Esc to stop it');
  });

  it('keeps a progress line repeated as is only once', () => {
    const job = run([{ type: 'stderr', text: 'backup X: 99%\nbackup X: 99%\n' }, { type: 'stderr', text: 'backup X: 99%\nbackup X: done\n' }]);
    expect(job.lines).toEqual(['backup X: 99%', 'backup X: done']);
  });

  it('keeps only the last 200 lines', () => {
    const job = run([{ type: 'stderr', text: Array.from({ length: 250 }, (_, i) => `line ${i}\n`).join('') }]);
    expect(job.lines).toHaveLength(200);
    expect(job.lines[0]).toBe('line 50');
  });

  it('a backup that exits 0 names the backup it stored; later events change nothing', () => {
    const job = run([{ type: 'stderr', text: 'backup X: done' }, { type: 'stdout', text: '20261127T100000Z-full\n' }, exit(0)]);
    expect(job).toMatchObject({ status: 'finished', ok: true, exitCode: 0, summary: 'backup 20261127T100000Z-full stored', lines: ['backup X: done'] });
    expect(jobStep(job, { type: 'stderr', text: 'late\n' })).toBe(job);
    expect(busyMessage(job, start)).toBeNull();
  });

  it('verify: ok names the backup, exit 1 counts the problems', () => {
    expect(run([{ type: 'stdout', text: 'backup B: ok (3 objects, 2 WAL files)\nrecovery window: ok, from …\n' }, exit(0)], 'verify').summary).toBe('backup B: ok (3 objects, 2 WAL files)');
    const failed = run([{ type: 'stdout', text: 'backups/B/part-1: checksum mismatch\nwal: gap at 000000010000000000000006\n' }, { type: 'stderr', text: 'pgwarden: verify: 2 problem(s)\n' }, exit(1)], 'verify');
    expect(failed).toMatchObject({ ok: false, summary: '2 problem(s): backups/B/part-1: checksum mismatch' });
  });

  it('a failure says pgwarden\'s message and its hint', () => {
    const job = run([{ type: 'stderr', text: 'backup X: from primary\npgwarden: backup failed, nothing of it is kept: archive_mode is off\n  hint: set archive_mode = on\n' }, exit(1)]);
    expect(job.summary).toBe('exit 1: backup failed, nothing of it is kept: archive_mode is off (hint: set archive_mode = on)');
  });

  it('a stop is remembered, and a backup stopped by its signal says it never counts', () => {
    const stopping = run([{ type: 'spawned', pid: 7 }, { type: 'stop' }]);
    expect(stopping.status).toBe('stopping');
    const stopped = jobStep(stopping, exit(null, 'SIGTERM'));
    expect(stopped).toMatchObject({ ok: false, signal: 'SIGTERM', summary: 'stopped on request (SIGTERM); a backup stopped before its manifest is stored never counts' });
    expect(stopPlanView(stopping, true, new Date(start.getTime() + 65_000))).toMatchObject({ title: 'Quit: a backup job is running', target: expect.stringContaining('running for 1m05s (pid 7)') });
  });

  it('a job that could not start says why', () => {
    expect(run([{ type: 'error', message: 'spawn /nope ENOENT', at: start }])).toMatchObject({ status: 'finished', ok: false, summary: 'could not start it: spawn /nope ENOENT' });
  });
});

describe('the runner, over real child processes', () => {
  let dir: string;
  let script: string;
  let auditPath: string;
  const jobs: BackupJobRunner[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgwarden-backup-actions-'));
    script = join(dir, 'fake-pgwarden.mjs');
    auditPath = join(dir, 'audit.log');
    // Stands in for bin/pgwarden.js: prints progress, then waits for a file to appear (or a signal).
    await writeFile(script, [
      "import { existsSync } from 'node:fs';",
      "const [command, ...rest] = process.argv.slice(2);",
      "process.stderr.write(`${command}: started with ${rest.join(' ')} password=${process.env.PGPASSWORD ?? ''}\\n`);",
      `const release = ${JSON.stringify(join(dir, 'release'))};`,
      "const timer = setInterval(() => { if (existsSync(release)) { clearInterval(timer); process.stdout.write('20261127T100000Z-full\\n'); process.exit(0); } }, 20);",
    ].join('\n'));
  });

  afterAll(async () => {
    for (const runner of jobs) await runner.close();
    await rm(dir, { recursive: true, force: true });
  });

  function runner(): BackupJobRunner {
    const made = new BackupJobRunner({
      config: { source: join(dir, 'config.json'), backups, clusters: [{ name: 'main', nodes: [{ name: 'db1', connection, dataDir: undefined }], pgbouncer: undefined, failover: defaultFailover }] },
      readOnly: false, dsn: true, auditPath, launcher: { execPath: process.execPath, script },
    });
    jobs.push(made);
    return made;
  }

  const context = { kind: 'backup', cluster: 'main', node: 'db1', label: 'backup@db1.example:5433/postgres', role: 'primary', selected: undefined, view } as const;

  it('runs one job per cluster, streams its lines (secrets redacted), and audits how it ended', async () => {
    const desk = runner();
    const seen: (BackupJob | null)[] = [];
    desk.subscribe((_jobs, finished) => seen.push(finished));
    const plan = desk.plan(context);
    expect(desk.start(plan.id)).toBeNull();
    const running = await waitFor('the first stderr line', () => Promise.resolve(desk.jobs().get('main')?.lines[0]));
    expect(running).toContain('backup: started with --dsn host=db1.example');
    // The child got the password in its environment; the console shows it redacted.
    expect(running).toContain('password=***');
    const second = desk.plan(context);
    expect(desk.start(second.id)).toMatch(/^a backup job is running on main \(/);

    await writeFile(join(dir, 'release'), '');
    const done = await waitFor('the job to finish', () => Promise.resolve(seen.find((job) => job !== null) ?? undefined));
    expect(done).toMatchObject({ status: 'finished', ok: true, exitCode: 0, summary: 'backup 20261127T100000Z-full stored' });
    await rm(join(dir, 'release'));

    desk.decline(second.id);
    const audit = await waitFor('two audit entries', async () => {
      const lines = (await readFile(auditPath, 'utf8').catch(() => '')).trim().split('\n').filter((line) => line !== '');
      return lines.length >= 2 ? lines.map((line) => JSON.parse(line) as Record<string, unknown>) : undefined;
    });
    expect(audit.map((line) => [line['action'], line['outcome']])).toEqual([['backup.now', 'ok'], ['backup.now', 'cancelled']]);
    expect(audit[0]).toMatchObject({ target: 'backup@db1.example:5433/postgres', sql: [plan.commandLine] });
    expect(JSON.stringify(audit)).not.toContain('hunter2');
  });

  it('stops a running job when asked: SIGTERM to its group, reported as stopped', async () => {
    const desk = runner();
    const plan = desk.plan(context);
    expect(desk.start(plan.id)).toBeNull();
    await waitFor('the job to print', () => Promise.resolve(desk.jobs().get('main')?.lines[0]));
    desk.stop('main');
    expect(desk.jobs().get('main')?.status).toBe('stopping');
    const ended = await waitFor('the job to end', () => Promise.resolve(desk.jobs().get('main')?.status === 'finished' ? desk.jobs().get('main') : undefined));
    expect(ended).toMatchObject({ ok: false, signal: 'SIGTERM', stopRequested: true });
    expect(desk.running()).toEqual([]);
  });

  it('close() stops what still runs and says what it stopped', async () => {
    const desk = runner();
    const plan = desk.plan(context);
    expect(desk.start(plan.id)).toBeNull();
    await waitFor('the job to print', () => Promise.resolve(desk.jobs().get('main')?.lines[0]));
    const stopped = await desk.close();
    expect(stopped).toHaveLength(1);
    expect(stopped[0]).toMatch(/^stopped the running backup job on main \(pid \d+, /);
    expect(desk.jobs().get('main')?.status).toBe('finished');
  });
});
