import { describe, expect, it } from 'vitest';
import { advisePoolSizes, type PoolAdviceInput } from '../../src/cluster/pool-advice.js';
import {
  chooseQueryTimeout, passwordPlaceholder, renderAuthSql, renderPgBouncerIni, renderUserlist, timeSettingMs, type PgBouncerConfigInput,
} from '../../src/cluster/pgbouncer-config.js';

const base: PoolAdviceInput = {
  maxConnections: 100,
  superuserReservedConnections: 3,
  reservedConnections: 0,
  databases: 1,
  users: 1,
  usersSource: 'test',
  peakActive: 6,
  samples: 10,
  cpus: 4,
  cpusSource: '--cpus',
};

describe('advisePoolSizes', () => {
  it('sizes the pool from the observed peak with a margin when it lies within 2–4 backends per CPU', () => {
    // 100 − 3 reserved = 97 usable, 10 kept free → 87; peak 6 × 1.5 = 9, within 8–16 for 4 CPUs.
    const advice = advisePoolSizes(base);
    expect(advice).toMatchObject({ serverBudget: 87, defaultPoolSize: 9, reservePoolSize: 3, maxDbConnections: 12 });
    expect(advice.warnings).toEqual([]);
    expect(advice.reasoning.join('\n')).toContain('At most 6 client backends ran at once');
  });

  it('stops at 4 backends per CPU and says that clients will wait in PgBouncer', () => {
    const advice = advisePoolSizes({ ...base, peakActive: 100 });
    expect(advice).toMatchObject({ defaultPoolSize: 16, reservePoolSize: 4, maxDbConnections: 20 });
    expect(advice.warnings.join('\n')).toMatch(/100 queries at once on 4 CPUs/);
  });

  it('keeps at least 2 backends per CPU when the sample was quiet', () => {
    expect(advisePoolSizes({ ...base, peakActive: 1, cpus: 8 })).toMatchObject({ defaultPoolSize: 16, reservePoolSize: 4, maxDbConnections: 20 });
  });

  it("falls back to PgBouncer's default of 20 with neither CPUs nor a sample, bounded by each database's share", () => {
    const unbounded = advisePoolSizes({ ...base, cpus: null, cpusSource: null, peakActive: null, samples: 0 });
    expect(unbounded).toMatchObject({ defaultPoolSize: 20, reservePoolSize: 5, maxDbConnections: 25 });
    expect(unbounded.reasoning.join('\n')).toContain('CPU count unknown (pass --cpus N)');
    // 20 − 3 = 17 usable, 3 kept free → 14 for 3 databases: 4 each, the reserve carved out of them.
    const small = advisePoolSizes({ ...base, maxConnections: 20, databases: 3, cpus: null, cpusSource: null, peakActive: null, samples: 0 });
    expect(small).toMatchObject({ serverBudget: 14, defaultPoolSize: 3, reservePoolSize: 1, maxDbConnections: 4 });
  });

  it('counts reserved_connections (PostgreSQL 16) as reserved', () => {
    expect(advisePoolSizes({ ...base, reservedConnections: 5 }).serverBudget).toBe(82);
  });

  it('splits a database between its users and warns when there are more users than servers', () => {
    expect(advisePoolSizes({ ...base, users: 3 })).toMatchObject({ defaultPoolSize: 3, reservePoolSize: 3, maxDbConnections: 12 });
    const crowded = advisePoolSizes({ ...base, users: 20 });
    expect(crowded.defaultPoolSize).toBe(1);
    expect(crowded.warnings.join('\n')).toMatch(/20 roles share 9 server connections/);
  });

  it('on a server with almost no free slots, still advises one connection and warns', () => {
    const advice = advisePoolSizes({ ...base, maxConnections: 5 });
    expect(advice).toMatchObject({ serverBudget: 1, defaultPoolSize: 1, reservePoolSize: 0, maxDbConnections: 1 });
    expect(advice.warnings.join('\n')).toMatch(/raise max_connections/);
  });

  it('never lets all databases together exceed what the server leaves PgBouncer', () => {
    for (const maxConnections of [10, 25, 100, 500]) {
      for (const databases of [1, 2, 7, 40]) {
        for (const users of [1, 4]) {
          for (const peakActive of [null, 0, 3, 50, 400]) {
            for (const cpus of [null, 1, 16]) {
              const input = { ...base, maxConnections, databases, users, peakActive, cpus };
              const advice = advisePoolSizes(input);
              const label = JSON.stringify(input);
              expect(databases * advice.maxDbConnections, label).toBeLessThanOrEqual(Math.max(databases, advice.serverBudget));
              expect(advice.serverBudget, label).toBeLessThanOrEqual(maxConnections - 3);
              expect(advice.defaultPoolSize + advice.reservePoolSize, label).toBeLessThanOrEqual(advice.maxDbConnections);
              expect(advice.defaultPoolSize, label).toBeGreaterThanOrEqual(1);
            }
          }
        }
      }
    }
  });
});

describe('query_timeout', () => {
  it('reads time settings in the units PostgreSQL writes', () => {
    expect(timeSettingMs('30s')).toBe(30_000);
    expect(timeSettingMs('5min')).toBe(300_000);
    expect(timeSettingMs('1500')).toBe(1500);
    expect(timeSettingMs('1.5h')).toBe(5_400_000);
    expect(timeSettingMs('0')).toBe(0);
    expect(timeSettingMs('soon')).toBeUndefined();
  });

  it('is a little above the longest statement_timeout, and off when some session has none', () => {
    expect(chooseQueryTimeout(30_000).seconds).toBe(35);
    expect(chooseQueryTimeout(600_000).seconds).toBe(660);
    expect(chooseQueryTimeout(null)).toMatchObject({ seconds: 0 });
    expect(chooseQueryTimeout(null).reason).toMatch(/statement_timeout per role/);
  });
});

describe('generated files', () => {
  const input: PgBouncerConfigInput = {
    cluster: 'prod',
    node: 'db1',
    backendHost: '10.0.0.5',
    backendPort: 5433,
    databases: ['app', 'reports', 'odd name'],
    listenAddr: '127.0.0.1',
    listenPort: 6432,
    poolMode: 'transaction',
    authUser: 'pgbouncer_auth',
    adminUsers: ['pgwarden'],
    authFilePath: '/etc/pgbouncer/userlist.txt',
    advice: advisePoolSizes(base),
    queryTimeout: chooseQueryTimeout(30_000),
  };

  it('pgbouncer.ini lists each plain database at the primary, with the advised sizes and every setting explained', () => {
    const ini = renderPgBouncerIni(input);
    expect(ini).toMatch(/^app = host=10\.0\.0\.5 port=5433 dbname=app$/m);
    expect(ini).toMatch(/^reports = host=10\.0\.0\.5 port=5433 dbname=reports$/m);
    expect(ini).not.toMatch(/^odd name/m);
    expect(ini).toContain('; "odd name" is left out');
    for (const line of ['pool_mode = transaction', 'auth_type = scram-sha-256', 'auth_user = pgbouncer_auth',
      'auth_query = SELECT usename, passwd FROM pgbouncer.get_auth($1)', 'auth_file = /etc/pgbouncer/userlist.txt',
      'default_pool_size = 9', 'reserve_pool_size = 3', 'max_db_connections = 12', 'query_timeout = 35',
      'admin_users = pgwarden', 'ignore_startup_parameters = extra_float_digits,options', 'listen_port = 6432']) {
      expect(ini).toMatch(new RegExp(`^${line.replace(/[$()]/g, '\\$&')}$`, 'm'));
    }
    // Every setting line is preceded by a comment or another setting of the same group.
    expect(ini).toMatch(/; Closes server connections idle this long[^\n]*\n[^\n]*\nserver_idle_timeout = 120/);
    expect(ini).toMatch(/"options"[^\n]*silently ignored/);
    expect(ini).not.toMatch(/password\s*=/i);
  });

  it('falls back to one wildcard entry when asked', () => {
    const ini = renderPgBouncerIni({ ...input, databases: null });
    expect(ini).toMatch(/^\* = host=10\.0\.0\.5 port=5433$/m);
  });

  it('the auth_file holds only placeholders', () => {
    expect(renderUserlist(input)).toBe(`"pgbouncer_auth" "${passwordPlaceholder}"\n"pgwarden" "${passwordPlaceholder}"\n`);
  });

  it('auth.sql quotes names, creates the function in each database, and sets no password', () => {
    const sql = renderAuthSql({ ...input, authUser: 'bouncer "auth"', databases: ['app', 'my-db', "it's"] });
    expect(sql).toContain(`SELECT format('CREATE ROLE %I LOGIN', 'bouncer "auth"')`);
    expect(sql).toContain('GRANT EXECUTE ON FUNCTION "pgbouncer"."get_auth"(text) TO "bouncer ""auth""";');
    expect(sql).toContain("\\connect -reuse-previous=on 'dbname=app'");
    expect(sql).toContain("\\connect -reuse-previous=on 'dbname=my-db'");
    // A name the ini cannot list is not pooled, so it needs no function.
    expect(sql).not.toContain("it's");
    expect(sql.match(/CREATE OR REPLACE FUNCTION/g)).toHaveLength(2);
    expect(sql).toContain('SECURITY DEFINER');
    expect(sql).toContain('AND NOT s.usesuper');
    expect(sql).not.toMatch(/PASSWORD\s+'/i);
  });
});
