import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pgwarden } from '../support/cli.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';

const dsn = 'postgresql://postgres@127.0.0.1:5432/test';
const dir = mkdtempSync(join(tmpdir(), 'pgwarden-cli-'));

afterAll(async () => {
  await closeAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('pgwarden show', () => {
  it('prints a readable snapshot and exits 0', async () => {
    const run = await pgwarden(['show', 'server', '--dsn', dsn]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('== Server (postgres@127.0.0.1:5432/test) ==');
    expect(run.stdout).toMatch(/^role: primary$/m);
    expect(run.stderr).toBe('');
  });

  it('prints the documented JSON: snake_case keys, every session with its pid', async () => {
    const session = await openSession(dsn, 'cli-json-test');
    await session.query('begin');
    await session.query('select txid_current()');
    const pid = await backendPid(session);
    const run = await pgwarden(['show', 'activity', '--json', '--dsn', dsn]);
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout) as { probe: string; status: string; at: string; snapshot: { sessions: Record<string, unknown>[] } };
    expect(doc).toMatchObject({ probe: 'activity', status: 'ok', target: 'postgres@127.0.0.1:5432/test' });
    expect(new Date(doc.at).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(doc.snapshot.sessions.every((s) => typeof s['pid'] === 'number')).toBe(true);
    const mine = doc.snapshot.sessions.find((s) => s['pid'] === pid);
    expect(mine).toMatchObject({ application: 'cli-json-test', state: 'idle in transaction', backend_type: 'client backend' });
    expect(typeof mine?.['xact_seconds']).toBe('number');
    await session.query('rollback');
  });

  it('exits 1 with the reason on stderr when it cannot connect, and never prints the password', async () => {
    const run = await pgwarden(['show', 'activity', '--dsn', 'postgresql://someone:topsecret@127.0.0.1:1/x']);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('someone@127.0.0.1:1/x: connection refused');
    expect(run.stderr).not.toContain('topsecret');
  });

  it('exits 3 with the fix when the probe is unsupported on that server', async () => {
    const run = await pgwarden(['show', 'statements', '--dsn', dsn]);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('statements: not available here');
    expect(run.stderr).toContain('shared_preload_libraries');
  });

  it('exits 2 naming the file, the key and the fix for a bad config, and leaves the file as it was', async () => {
    const file = join(dir, 'bad.json');
    const text = JSON.stringify({ clusters: [{ name: 'x', nodes: [{ name: 'a', dsn: 'postgresql://h/db?sslmode=requried' }] }] });
    writeFileSync(file, text);
    const run = await pgwarden(['show', 'server', '--config', file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`invalid sslmode "requried" in ${file}: clusters[0].nodes[0].dsn`);
    expect(run.stderr).toContain('hint: use one of disable');
    expect(readFileSync(file, 'utf8')).toBe(text);
  });

  it('exits 2 for an unknown probe, listing the known ones', async () => {
    const run = await pgwarden(['show', 'lcoks', '--dsn', dsn]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown probe "lcoks"');
    expect(run.stderr).toContain('activity');
  });

  it('connects as psql would from the PG* variables when there is no config and no --dsn', async () => {
    const run = await pgwarden(['show', 'server', '--json'], { PGHOST: '127.0.0.1', PGPORT: '5432', PGUSER: 'postgres', PGDATABASE: 'test', XDG_CONFIG_HOME: dir });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ probe: 'server', status: 'ok', target: 'postgres@127.0.0.1:5432/test' });
  });

  it('config prints the resolved targets with the password hidden', async () => {
    const file = join(dir, 'good.json');
    writeFileSync(file, JSON.stringify({ clusters: [{ name: 'prod', nodes: [{ name: 'db1', dsn: 'postgresql://mon:hunter2@db1:5433/app' }] }] }));
    const run = await pgwarden(['config', '--config', file]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('node db1: mon@db1:5433/app sslmode=prefer password=set');
    expect(run.stdout).not.toContain('hunter2');
  });
});
