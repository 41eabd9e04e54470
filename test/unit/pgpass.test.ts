import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pgpassPassword } from '../../src/config/pgpass.js';
import type { ConnectionSpec } from '../../src/config/types.js';

const dir = mkdtempSync(join(tmpdir(), 'pgwarden-pgpass-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function spec(overrides: Partial<ConnectionSpec> = {}): ConnectionSpec {
  return { host: 'db1', port: 5432, user: 'mon', database: 'app', password: undefined, sslmode: 'prefer', sslrootcert: undefined, connectTimeoutMs: 5000, ...overrides };
}

function passfile(text: string, mode = 0o600): string {
  const file = join(dir, `pgpass-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

describe('pgpass', () => {
  const file = passfile([
    '# comment',
    'db2:5432:*:mon:other',
    'db1:5432:app:mon:pa\\:ss\\\\word',
    '*:*:*:mon:fallback',
    'localhost:5432:*:sock:viasocket',
  ].join('\n'));

  it('takes the first matching line, with escapes and wildcards', () => {
    expect(pgpassPassword(spec(), { PGPASSFILE: file })).toBe('pa:ss\\word');
    expect(pgpassPassword(spec({ host: 'db9' }), { PGPASSFILE: file })).toBe('fallback');
    expect(pgpassPassword(spec({ user: 'nobody' }), { PGPASSFILE: file })).toBeUndefined();
  });

  it('matches a Unix-socket connection as localhost', () => {
    expect(pgpassPassword(spec({ host: '/var/run/postgresql', user: 'sock' }), { PGPASSFILE: file })).toBe('viasocket');
  });

  it('ignores a file readable by others, as libpq does', () => {
    const open = passfile('*:*:*:*:leaked', 0o644);
    expect(pgpassPassword(spec(), { PGPASSFILE: open })).toBeUndefined();
  });

  it('is quiet when there is no file', () => {
    expect(pgpassPassword(spec(), { PGPASSFILE: join(dir, 'absent') })).toBeUndefined();
  });
});
