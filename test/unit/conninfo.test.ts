import { describe, expect, it } from 'vitest';
import { describeConnection, parseDsn, resolveConnection } from '../../src/config/conninfo.js';
import { redact } from '../../src/config/redact.js';

describe('resolveConnection', () => {
  it('parses URIs with percent-encoding, IPv6 hosts and query parameters', () => {
    const spec = resolveConnection('postgresql://mon%40corp:p%40ss@[::1]:6000/my%20db?sslmode=verify-full&connect_timeout=3', 'test', {});
    expect(spec).toMatchObject({ user: 'mon@corp', password: 'p@ss', host: '::1', port: 6000, database: 'my db', sslmode: 'verify-full', connectTimeoutMs: 3000 });
  });

  it('parses key=value conninfo with quoted values', () => {
    const spec = resolveConnection("host=db1 port=5433 dbname='my app' user=u password='it\\'s'", 'test', {});
    expect(spec).toMatchObject({ host: 'db1', port: 5433, database: 'my app', user: 'u', password: "it's" });
  });

  it('fills gaps from PG* variables, then from libpq defaults', () => {
    const spec = resolveConnection('dbname=x', 'test', { PGHOST: 'envhost', PGPORT: '6543', PGUSER: 'envuser', PGPASSWORD: 'pw', PGSSLMODE: 'require' });
    expect(spec).toMatchObject({ host: 'envhost', port: 6543, user: 'envuser', database: 'x', password: 'pw', sslmode: 'require' });
    const defaults = resolveConnection(undefined, 'test', { PGUSER: 'u' });
    expect(defaults.database).toBe('u');
    expect(defaults.sslmode).toBe('prefer');
    expect(defaults.password).toBeUndefined();
  });

  it('refuses several hosts and unknown parameters with the fix', () => {
    expect(() => resolveConnection('host=a,b', 'here', {})).toThrow(/several hosts/);
    expect(() => resolveConnection('postgresql://h/db?target_session_attrs=any', 'here', {})).toThrow(/unsupported connection parameter "target_session_attrs" in here/);
    expect(() => resolveConnection('host=a junk', 'here', {})).toThrow(/cannot parse connection string/);
  });

  it('describes a connection without its password', () => {
    const spec = resolveConnection('postgresql://u:secret@h:1/d', 'test', {});
    expect(describeConnection(spec)).toBe('u@h:1/d');
  });

  it('parses an empty DSN as nothing', () => {
    expect(parseDsn('').size).toBe(0);
  });
});

describe('redact', () => {
  it.each([
    ['postgresql://u:hunter2@h/db', 'postgresql://u:***@h/db'],
    ["host=h password=hunter2 user=u", 'host=h password=*** user=u'],
    ["password='hunter 2' host=h", 'password=*** host=h'],
    ['postgres://h/db?password=hunter2&sslmode=require', 'postgres://h/db?password=***&sslmode=require'],
  ])('%s', (input, expected) => {
    expect(redact(input)).toBe(expected);
  });

  it('removes known secrets anywhere', () => {
    expect(redact('auth failed for hunter2 at h', ['hunter2'])).toBe('auth failed for *** at h');
  });
});
