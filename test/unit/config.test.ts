import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';

const probes = ['server', 'activity', 'tables'];
const dir = mkdtempSync(join(tmpdir(), 'pgwarden-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

const env = { PGHOST: '/var/run/postgresql', PGUSER: 'alice' };

describe('parseConfig', () => {
  it('reads clusters, nodes, pgbouncer and probe settings', () => {
    const config = parseConfig(
      {
        refresh_ms: 1000,
        clusters: [{
          name: 'prod',
          nodes: [{ name: 'db1', dsn: 'postgresql://monitor:s3cret@db1:6543/app?sslmode=require' }, { name: 'db2', dsn: 'host=db2 dbname=app user=monitor' }],
          pgbouncer: { dsn: 'postgresql://pgbouncer@db1:6432/pgbouncer' },
        }],
        probes: { tables: { cadence_ms: 600000, timeout_ms: 20000 }, activity: { enabled: false } },
      },
      'prod.json',
      probes,
    );
    expect(config.refreshMs).toBe(1000);
    const [cluster] = config.clusters;
    expect(cluster?.nodes.map((n) => [n.name, n.connection.host, n.connection.port, n.connection.database])).toEqual([
      ['db1', 'db1', 6543, 'app'],
      ['db2', 'db2', 5432, 'app'],
    ]);
    expect(cluster?.nodes[0]?.connection).toMatchObject({ user: 'monitor', password: 's3cret', sslmode: 'require' });
    expect(cluster?.pgbouncer?.connection.database).toBe('pgbouncer');
    expect(config.probes['tables']).toEqual({ enabled: true, cadenceMs: 600000, timeoutMs: 20000 });
    expect(config.probes['activity']?.enabled).toBe(false);
  });

  it.each([
    [{ clusters: {} }, 'prod.json: clusters: expected a list, found an object'],
    [{ clusters: [{ name: 'a', nodes: [] }] }, 'prod.json: clusters[0].nodes: a cluster needs at least one node'],
    [{ clusters: [{ name: 'a', nodes: [{ name: 'n', dsn: 42 }] }] }, 'prod.json: clusters[0].nodes[0].dsn: expected a non-empty string, found number 42'],
    [{ refresh_ms: 10 }, 'prod.json: refresh_ms: expected a whole number from 250 to 3600000, found number 10'],
    [{ probes: { tabels: {} } }, 'prod.json: probes.tabels: unknown key'],
    [{ clusters: [{ name: 'a', nodes: [{ name: 'n', dsn: 'db1' }] }] }, 'cannot parse connection string "db1" near "db1" in prod.json: clusters[0].nodes[0].dsn'],
    [{ clusters: [{ name: 'a', nodes: [{ name: 'n', dsn: 'postgresql://h/db?sslmode=bogus' }] }] }, 'invalid sslmode "bogus" in prod.json: clusters[0].nodes[0].dsn'],
    [{ clusters: [{ name: 'a', nodes: [{ name: 'n', dsn: 'host=h port=99999' }] }] }, 'invalid port "99999" in prod.json: clusters[0].nodes[0].dsn'],
    [{ clusters: [{ name: 'a', nodes: [{ name: 'n', dsn: 'host=h' }, { name: 'n', dsn: 'host=x' }] }] }, 'duplicate node name "n"'],
  ])('names the file, the key and the problem: %j', (json, message) => {
    const error = errorOf(() => parseConfig(json, 'prod.json', probes));
    expect(error.message).toContain(message);
    expect(error.hint).toBeTruthy();
  });

  it('remaps keys, refusing unknown commands and clashes within a scope', () => {
    const config = parseConfig({ keys: { quit: ['Q'], 'session.terminate': ['X'] }, audit_log: '/tmp/audit.log' }, 'k.json', probes);
    expect(config.keys).toEqual({ quit: ['Q'], 'session.terminate': ['X'] });
    expect(config.auditLog).toBe('/tmp/audit.log');
    expect(errorOf(() => parseConfig({ keys: { qiut: ['Q'] } }, 'k.json', probes)).message).toBe('k.json: keys.qiut: unknown key');
    const clash = errorOf(() => parseConfig({ keys: { quit: ['p'] } }, 'k.json', probes));
    expect(clash.message).toBe('k.json: keys.quit: "p" is already bound to pause in the same scope');
    expect(clash.hint).toContain('remap pause too');
    expect(errorOf(() => parseConfig({ keys: { quit: [] } }, 'k.json', probes)).message).toBe('k.json: keys.quit: no key given');
  });

  it('suggests the right spelling of a misspelt key', () => {
    const error = errorOf(() => parseConfig({ refreshMs: 1000 }, 'c.json', probes));
    expect(error.message).toBe('c.json: (top level).refreshMs: unknown key');
    expect(error.hint).toBe('did you mean "refresh_ms"?');
  });

  it('never puts a password in an error message', () => {
    const error = errorOf(() => parseConfig({ clusters: [{ name: 'a', nodes: [{ name: 'n', dsn: 'postgresql://u:hunter2@h:notaport/db' }] }] }, 'c.json', probes));
    expect(error.message).not.toContain('hunter2');
  });
});

describe('loadConfig', () => {
  it('with no file and no --dsn connects as psql would, from the PG* variables', () => {
    const config = loadConfig({ configFile: undefined, dsn: undefined, knownProbes: probes, env, defaultPath: join(dir, 'absent.json') });
    expect(config.source).toBe('defaults (no config file)');
    expect(config.clusters[0]?.nodes[0]?.connection).toMatchObject({ host: '/var/run/postgresql', port: 5432, user: 'alice', database: 'alice', password: undefined });
  });

  it('--dsn replaces the configured clusters and keeps the other settings', () => {
    const path = file('with-dsn.json', JSON.stringify({ refresh_ms: 5000, clusters: [{ name: 'x', nodes: [{ name: 'a', dsn: 'host=a' }] }] }));
    const config = loadConfig({ configFile: path, dsn: 'postgresql://bob@10.0.0.9/app', knownProbes: probes, env });
    expect(config.refreshMs).toBe(5000);
    expect(config.clusters).toHaveLength(1);
    expect(config.clusters[0]?.nodes[0]?.connection).toMatchObject({ host: '10.0.0.9', user: 'bob', database: 'app' });
  });

  it('reports invalid JSON with the file name and leaves the file untouched', () => {
    const text = '{ "clusters": [ }';
    const path = file('broken.json', text);
    const error = errorOf(() => loadConfig({ configFile: path, dsn: undefined, knownProbes: probes, env }));
    expect(error.message).toMatch(new RegExp(`^${path}: not valid JSON`));
    expect(error.hint).toContain('untouched');
  });

  it('reports a missing --config file', () => {
    const error = errorOf(() => loadConfig({ configFile: join(dir, 'nope.json'), dsn: undefined, knownProbes: probes, env }));
    expect(error.message).toBe(`${join(dir, 'nope.json')}: no such config file`);
  });

  it('reads the default location when it exists', () => {
    const path = file('default.json', JSON.stringify({ clusters: [{ name: 'home', nodes: [{ name: 'n', dsn: 'host=h' }] }] }));
    const config = loadConfig({ configFile: undefined, dsn: undefined, knownProbes: probes, env, defaultPath: path });
    expect(config.source).toBe(path);
    expect(config.clusters[0]?.name).toBe('home');
  });
});
