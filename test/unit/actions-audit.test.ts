import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, defaultAuditPath, recordCancelled } from '../../src/actions/audit.js';
import type { AuditEntry } from '../../src/actions/audit.js';
import { cancelSteps } from '../../src/actions/cancel-backend.js';
import type { ActionContext, Plan } from '../../src/actions/types.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { PgNode } from '../../src/db/node.js';

let dir: string;
// Never connected: the audit only reads its label.
const node = new PgNode(resolveConnection('postgresql://alice@db1.example:5433/app', 'test'), { statementTimeoutMs: 1000, lockTimeoutMs: 1000 });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgwarden-audit-unit-'));
});

afterAll(async () => {
  await node.close();
  await rm(dir, { recursive: true, force: true });
});

function entry(overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    time: '2026-01-02T03:04:05.000Z',
    os_user: 'dba',
    host: 'bastion',
    target: 'alice@db1.example:5433/app',
    action: 'session.cancel',
    plan_id: 'p1',
    plan_target: 'pid 4242 (bob@app, psql)',
    sql: ['SELECT pg_cancel_backend(4242)'],
    outcome: 'ok',
    message: 'pg_cancel_backend(4242) returned true',
    ...overrides,
  };
}

describe('defaultAuditPath', () => {
  it('uses $XDG_STATE_HOME when it is absolute, else ~/.local/state', () => {
    expect(defaultAuditPath({ XDG_STATE_HOME: '/var/state' }, '/home/dba')).toBe('/var/state/pgwarden/audit.log');
    expect(defaultAuditPath({}, '/home/dba')).toBe('/home/dba/.local/state/pgwarden/audit.log');
    expect(defaultAuditPath({ XDG_STATE_HOME: '' }, '/home/dba')).toBe('/home/dba/.local/state/pgwarden/audit.log');
    // The XDG spec: a relative value is invalid and ignored.
    expect(defaultAuditPath({ XDG_STATE_HOME: 'state' }, '/home/dba')).toBe('/home/dba/.local/state/pgwarden/audit.log');
    expect(new AuditLog({ env: { XDG_STATE_HOME: '/x' } }).path).toBe('/x/pgwarden/audit.log');
  });
});

describe('AuditLog', () => {
  it('creates its directory 0700 and its file 0600, and appends one JSON line per entry', async () => {
    const log = new AuditLog({ path: join(dir, 'a', 'b', 'audit.log') });
    await log.append(entry());
    await log.append(entry({ plan_id: 'p2', outcome: 'failed' }));
    expect((await stat(join(dir, 'a'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'a', 'b'))).mode & 0o777).toBe(0o700);
    expect((await stat(log.path)).mode & 0o777).toBe(0o600);
    const lines = (await readFile(log.path, 'utf8')).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(JSON.parse(lines[0] ?? '')).toEqual(entry());
    expect((await log.read()).map((e) => e.plan_id)).toEqual(['p1', 'p2']);
  });

  it('keeps the order of concurrent appends', async () => {
    const log = new AuditLog({ path: join(dir, 'order', 'audit.log') });
    await Promise.all(Array.from({ length: 50 }, (_, i) => log.append(entry({ plan_id: `p${i}` }))));
    expect((await log.read()).map((e) => e.plan_id)).toEqual(Array.from({ length: 50 }, (_, i) => `p${i}`));
  });

  it('never writes a password: the given secrets and any DSN password are redacted', async () => {
    const log = new AuditLog({ path: join(dir, 'secrets', 'audit.log'), secrets: ['hunter22'] });
    await log.append(
      entry({ message: 'connection to postgresql://alice:s3cr3t-pw@db1/app failed: password hunter22 rejected', plan_target: 'pid 1 (hunter22)', sql: ["ALTER ROLE x PASSWORD 'other-secret'"] }),
      ['other-secret'],
    );
    const text = await readFile(log.path, 'utf8');
    expect(text).not.toMatch(/hunter22|s3cr3t-pw|other-secret/);
    const [written] = await log.read();
    expect(written?.message).toBe('connection to postgresql://alice:***@db1/app failed: password *** rejected');
    expect(written?.sql).toEqual(["ALTER ROLE x PASSWORD '***'"]);
  });

  it('reads an absent log as empty, and ensureWritable fails where it cannot write', async () => {
    expect(await new AuditLog({ path: join(dir, 'none', 'audit.log') }).read()).toEqual([]);
    // A file where the directory should be.
    const blocked = new AuditLog({ path: join(dir, 'a', 'b', 'audit.log', 'x', 'audit.log') });
    await expect(blocked.ensureWritable()).rejects.toThrow();
  });

  it('records a plan the user declined, with its SQL, the node label and no password', async () => {
    const log = new AuditLog({ path: join(dir, 'cancelled', 'audit.log') });
    const connection = { ...node.spec, password: 'pw-never-written' };
    const context: ActionContext = { node, connection, readOnly: false, audit: log, now: () => new Date('2026-03-04T05:06:07Z') };
    const plan: Plan<'session.cancel'> = {
      id: 'plan-1', action: 'session.cancel', title: 'Cancel the query of pid 4242', target: 'pid 4242 (bob@app, psql)', danger: 'low',
      steps: cancelSteps(4242), confirmToken: null, refused: null, input: { pid: 4242 }, basis: { pid: 4242, startedUs: '1' }, createdAt: new Date(),
    };
    await recordCancelled(plan, context);
    const [line] = await log.read();
    expect(line).toMatchObject({
      time: '2026-03-04T05:06:07.000Z',
      target: 'alice@db1.example:5433/app',
      action: 'session.cancel',
      plan_id: 'plan-1',
      plan_target: 'pid 4242 (bob@app, psql)',
      sql: ['SELECT pg_cancel_backend(4242)'],
      outcome: 'cancelled',
      message: 'cancelled at the confirmation; nothing was run',
    });
    expect(line?.os_user).not.toBe('');
    expect(line?.host).not.toBe('');
    expect(await readFile(log.path, 'utf8')).not.toContain('pw-never-written');
  });
});
