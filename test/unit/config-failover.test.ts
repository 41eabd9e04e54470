// The failover settings of a cluster (src/config/failover.ts), the nodes' dataDir and PgBouncer's
// ini path: defaults, values, and errors that name the file, the key and the fix.
import { describe, expect, it } from 'vitest';
import { defaultFailover } from '../../src/config/failover.js';
import type { Json } from '../../src/config/load.js';
import { parseConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';

const file = '/etc/pgwarden.json';

function cluster(extra: Record<string, Json>, node: Record<string, Json> = {}): Json {
  return { clusters: [{ name: 'prod', nodes: [{ name: 'db1', dsn: 'postgresql://monitor@db1/postgres', ...node }, { name: 'db2', dsn: 'postgresql://monitor@db2/postgres' }], ...extra }] };
}

function parse(value: Json): ReturnType<typeof parseConfig> {
  return parseConfig(value, file, ['server']);
}

function errorOf(value: Json): UserError {
  try {
    parse(value);
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

describe('clusters[].failover', () => {
  it('defaults to manual failover with a 5 s loss delay and a 16 MiB lag limit', () => {
    const failover = parse(cluster({})).clusters[0]?.failover;
    expect(failover).toEqual(defaultFailover);
    expect(failover).toMatchObject({ automatic: false, lostAfterMs: 5000, maxLagBytes: 16 * 1024 * 1024, pauseTimeoutMs: 10_000, catchUpTimeoutMs: 30_000 });
  });

  it('reads every key, seconds turned into milliseconds', () => {
    const failover = parse(cluster({ failover: { automatic: true, lostAfterSeconds: 3, maxLagBytes: 1024, pauseTimeoutSeconds: 2, catchUpTimeoutSeconds: 7, replicationUser: 'replicator', passfile: '/var/lib/postgresql/.pgpass' } })).clusters[0]?.failover;
    expect(failover).toEqual({ automatic: true, lostAfterMs: 3000, maxLagBytes: 1024, pauseTimeoutMs: 2000, catchUpTimeoutMs: 7000, replicationUser: 'replicator', passfile: '/var/lib/postgresql/.pgpass' });
  });

  it('names the file, the key and the fix for a bad value', () => {
    const wrongType = errorOf(cluster({ failover: { automatic: 'yes' } }));
    expect(wrongType.message).toBe(`${file}: clusters[0].failover.automatic: expected true or false, found string "yes"`);
    expect(wrongType.hint).toContain('true or false');
    expect(errorOf(cluster({ failover: { lostAfterSeconds: 0 } })).message).toContain('clusters[0].failover.lostAfterSeconds: expected a whole number from 1 to 3600');
    expect(errorOf(cluster({ failover: { passfile: 'pgpass' } })).message).toContain('clusters[0].failover.passfile: expected an absolute path');
    const unknown = errorOf(cluster({ failover: { lost_after_seconds: 3 } }));
    expect(unknown.message).toContain('clusters[0].failover.lost_after_seconds: unknown key');
    expect(unknown.hint).toContain('lostAfterSeconds');
  });
});

describe('nodes[].dataDir and pgbouncer.ini', () => {
  it('are optional', () => {
    const parsed = parse(cluster({}));
    expect(parsed.clusters[0]?.nodes.map((node) => node.dataDir)).toEqual([undefined, undefined]);
    expect(parsed.clusters[0]?.pgbouncer).toBeUndefined();
  });

  it('are read as absolute paths', () => {
    const parsed = parse(cluster({ pgbouncer: { dsn: 'postgresql://admin@127.0.0.1:6432/pgbouncer', ini: '/etc/pgbouncer/pgbouncer.ini' } }, { dataDir: '/var/lib/postgresql/15/main' }));
    expect(parsed.clusters[0]?.nodes[0]?.dataDir).toBe('/var/lib/postgresql/15/main');
    expect(parsed.clusters[0]?.pgbouncer?.ini).toBe('/etc/pgbouncer/pgbouncer.ini');
  });

  it('refuse a relative path with the fix', () => {
    const relative = errorOf(cluster({}, { dataDir: 'main' }));
    expect(relative.message).toBe(`${file}: clusters[0].nodes[0].dataDir: expected an absolute path, found "main"`);
    expect(relative.hint).toContain('/var/lib/postgresql/15/main');
    expect(errorOf(cluster({ pgbouncer: { dsn: 'postgresql://admin@127.0.0.1:6432/pgbouncer', ini: 'pgbouncer.ini' } })).message).toContain('clusters[0].pgbouncer.ini: expected an absolute path');
  });
});
