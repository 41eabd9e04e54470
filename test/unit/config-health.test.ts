import { describe, expect, it } from 'vitest';
import { statementEnd } from '../../src/config/health.js';
import type { Json } from '../../src/config/load.js';
import { parseConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';

const file = '/etc/pgwarden.json';
const clusters = [
  { name: 'prod', nodes: [{ name: 'db1', dsn: 'postgresql://monitor@db1/postgres' }, { name: 'db2', dsn: 'postgresql://monitor@db2/postgres' }] },
  { name: 'staging', nodes: [{ name: 's1', dsn: 'postgresql://monitor@s1/postgres' }] },
];

function parse(health: Json): ReturnType<typeof parseConfig> {
  return parseConfig({ clusters, health }, file, ['server']);
}

function errorOf(health: Json): UserError {
  try {
    parse(health);
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

const endpoint = { name: 'api', url: 'https://api.example.com/healthz' };
const sqlCheck = { name: 'orders-flowing', query: "select count(*) from orders where created_at > now() - interval '10 minutes'", warning: 1, critical: 0, direction: 'below' };

describe('the health section', () => {
  it('is optional: no endpoints, no SQL checks', () => {
    expect(parseConfig({ clusters }, file, ['server']).health).toEqual({ http: [], sql: [] });
    expect(parse({}).health).toEqual({ http: [], sql: [] });
  });

  it('reads endpoints and SQL checks with their defaults', () => {
    const health = parse({
      http: [
        endpoint,
        { name: 'admin', url: 'http://user:s3cret@admin.internal:8080/ready', cluster: 'staging', timeout_ms: 2000, expect_status: [200, 204], warning_latency_ms: 500, critical_latency_ms: 1500 },
      ],
      sql: [
        { ...sqlCheck, query: `${sqlCheck.query};  ` },
        { name: 'queue', cluster: 'prod', node: 'db2', database: 'jobs', query: 'select count(*) from jobs where done = false -- pending', warning: 100, critical: 1000, timeout_ms: 2000 },
      ],
    }).health;
    expect(health.http).toEqual([
      { name: 'api', url: 'https://api.example.com/healthz', cluster: undefined, timeoutMs: 5000, expectStatus: undefined, warningLatencyMs: undefined, criticalLatencyMs: undefined },
      { name: 'admin', url: 'http://user:s3cret@admin.internal:8080/ready', cluster: 'staging', timeoutMs: 2000, expectStatus: [200, 204], warningLatencyMs: 500, criticalLatencyMs: 1500 },
    ]);
    expect(health.sql).toEqual([
      // The trailing semicolon is dropped; the default direction is above.
      { name: 'orders-flowing', cluster: undefined, node: undefined, database: undefined, query: sqlCheck.query, warning: 1, critical: 0, direction: 'below', timeoutMs: 5000 },
      { name: 'queue', cluster: 'prod', node: 'db2', database: 'jobs', query: 'select count(*) from jobs where done = false -- pending', warning: 100, critical: 1000, direction: 'above', timeoutMs: 2000 },
    ]);
  });

  it('finds the end of a statement outside literals, quoted names, dollar quotes and comments', () => {
    expect(statementEnd("select ';' as a, \"x;y\" from t -- c;\n where b = $$;$$ and c = $q$;$q$ /* ; */")).toBe(-1);
    expect(statementEnd("select 'it''s'; delete from t")).toBe(14);
    expect(statementEnd('select 1; select 2')).toBe(8);
    expect(parse({ sql: [{ ...sqlCheck, query: "select count(*) from notes where body like '%;%'" }] }).health.sql[0]?.query).toBe("select count(*) from notes where body like '%;%'");
    expect(parse({ sql: [{ ...sqlCheck, query: 'select 1; -- done' }] }).health.sql[0]?.query).toBe('select 1');
  });

  const cases: readonly { name: string; health: Json; message: string; hint: RegExp }[] = [
    { name: 'an unknown key', health: { https: [] }, message: 'health.https: unknown key', hint: /known keys here: http, sql/ },
    { name: 'a list that is not one', health: { http: endpoint }, message: 'health.http: expected a list, found an object', hint: /\[ … \]/ },
    { name: 'a misspelt endpoint key', health: { http: [{ ...endpoint, timeoutMs: 10 }] }, message: 'health.http[0].timeoutMs: unknown key', hint: /did you mean "timeout_ms"/ },
    { name: 'an endpoint without a name', health: { http: [{ url: endpoint.url }] }, message: 'health.http[0].name: expected a non-empty string, found nothing', hint: /"api"/ },
    { name: 'a duplicate endpoint', health: { http: [endpoint, endpoint] }, message: 'health.http[1].name: duplicate endpoint name "api"', hint: /own name/ },
    { name: 'a URL that is not http', health: { http: [{ name: 'api', url: 'ftp://user:hunter2@x/' }] }, message: 'health.http[0].url: not an http or https URL', hint: /https:\/\/api.example.com\/healthz/ },
    { name: 'an unknown cluster', health: { http: [{ ...endpoint, cluster: 'prd' }] }, message: 'health.http[0].cluster: no cluster named "prd"', hint: /one of prod, staging/ },
    { name: 'a bad timeout', health: { http: [{ ...endpoint, timeout_ms: 10 }] }, message: 'health.http[0].timeout_ms: expected a whole number from 100 to 600000', hint: /range/ },
    { name: 'an impossible status', health: { http: [{ ...endpoint, expect_status: [200, 700] }] }, message: 'health.http[0].expect_status[1]: expected a whole number from 100 to 599', hint: /range/ },
    { name: 'no status at all', health: { http: [{ ...endpoint, expect_status: [] }] }, message: 'health.http[0].expect_status: an empty list accepts no answer at all', hint: /any 2xx/ },
    { name: 'a latency the timeout hides', health: { http: [{ ...endpoint, timeout_ms: 2000, warning_latency_ms: 2000 }] }, message: 'health.http[0].warning_latency_ms: 2000 ms is not below timeout_ms (2000 ms)', hint: /raise health.http\[0\].timeout_ms/ },
    { name: 'critical latency under warning', health: { http: [{ ...endpoint, warning_latency_ms: 800, critical_latency_ms: 500 }] }, message: 'health.http[0].critical_latency_ms: 500 ms is not above warning_latency_ms (800 ms)', hint: /larger one/ },
    { name: 'a duplicate SQL check', health: { sql: [sqlCheck, sqlCheck] }, message: 'health.sql[1].name: duplicate SQL check name "orders-flowing"', hint: /own name/ },
    { name: 'an unknown node', health: { sql: [{ ...sqlCheck, node: 'db3' }] }, message: 'health.sql[0].node: no node named "db3" in cluster "prod"', hint: /one of db1, db2/ },
    { name: 'a node of another cluster', health: { sql: [{ ...sqlCheck, cluster: 'staging', node: 'db1' }] }, message: 'health.sql[0].node: no node named "db1" in cluster "staging"', hint: /one of s1/ },
    { name: 'no query', health: { sql: [{ ...sqlCheck, query: '  ' }] }, message: 'health.sql[0].query: expected a non-empty string', hint: /select count/ },
    { name: 'two statements', health: { sql: [{ ...sqlCheck, query: 'select 1; delete from orders' }] }, message: 'health.sql[0].query: more than one statement (a ";" at character 9)', hint: /single query.*READ ONLY/ },
    { name: 'only a semicolon', health: { sql: [{ ...sqlCheck, query: ' ; ' }] }, message: 'health.sql[0].query: no statement before the ";"', hint: /first column is a number/ },
    { name: 'a level that is not a number', health: { sql: [{ ...sqlCheck, warning: '1' }] }, message: 'health.sql[0].warning: expected a number, found string "1"', hint: /set health.sql\[0\].warning/ },
    { name: 'a missing level', health: { sql: [{ name: 'x', query: 'select 1', warning: 1 }] }, message: 'health.sql[0].critical: expected a number, found nothing', hint: /e.g. 10/ },
    { name: 'a bad direction', health: { sql: [{ ...sqlCheck, direction: 'down' }] }, message: 'health.sql[0].direction: expected "above" or "below", found "down"', hint: /higher values are worse/ },
    { name: 'levels the wrong way round (above)', health: { sql: [{ ...sqlCheck, direction: 'above' }] }, message: 'health.sql[0].critical: with direction "above" (higher is worse) the critical level must be above the warning level (warning 1, critical 0)', hint: /swap them, or set health.sql\[0\].direction to "below"/ },
    { name: 'levels the wrong way round (below)', health: { sql: [{ ...sqlCheck, warning: 0, critical: 1 }] }, message: 'health.sql[0].critical: with direction "below" (lower is worse) the critical level must be below the warning level (warning 0, critical 1)', hint: /direction to "above"/ },
    { name: 'a bad SQL timeout', health: { sql: [{ ...sqlCheck, timeout_ms: 0 }] }, message: 'health.sql[0].timeout_ms: expected a whole number from 100 to 600000', hint: /range/ },
  ];

  for (const { name, health, message, hint } of cases) {
    it(`names the file, the key and the fix: ${name}`, () => {
      const error = errorOf(health);
      expect(error.message).toContain(`${file}: ${message}`);
      expect(error.hint).toMatch(hint);
    });
  }

  it('never echoes a URL: it may carry a password', () => {
    const error = errorOf({ http: [{ name: 'api', url: 'ftp://user:hunter2@x/' }] });
    expect(`${error.message} ${error.hint ?? ''}`).not.toContain('hunter2');
  });

  it('takes cluster names on trust when the file declares no cluster (--dsn or the environment give the target)', () => {
    const config = parseConfig({ health: { http: [{ ...endpoint, cluster: 'anything' }], sql: [{ ...sqlCheck, node: 'db9' }] } }, file, ['server']);
    expect(config.health.http[0]?.cluster).toBe('anything');
    expect(config.health.sql[0]?.node).toBe('db9');
  });

  it('the health key is known at the top level', () => {
    expect(() => parseConfig({ healthz: {} }, file, ['server'])).toThrow(/\(top level\)\.healthz: unknown key/);
    try {
      parseConfig({ healthz: {} }, file, ['server']);
    } catch (error) {
      expect((error as UserError).hint).toContain('health');
    }
  });
});
