// repointIni (src/cluster/pgbouncer-control.ts): which [databases] entries move to the new primary,
// and that everything else in pgbouncer.ini stays as it was.
import { describe, expect, it } from 'vitest';
import { repointIni } from '../../src/cluster/pgbouncer-control.js';

const ini = `;; pgbouncer.ini written by hand
[databases]
; the application
app = host=10.0.0.1 port=5432 dbname=app
reports = host=10.0.0.2 port=5432 dbname=app
legacy = host=10.0.0.1 dbname=legacy
local = dbname=app
* = host=localhost port=5433

[pgbouncer]
listen_port = 6432
host = 10.0.0.1
`;

describe('repointIni', () => {
  it('moves the entries on the old primary (a missing port is 5432) and keeps the rest', () => {
    const result = repointIni(ini, { host: '10.0.0.1', port: 5432 }, { host: '10.0.0.3', port: 5434 });
    expect(result.entries).toEqual(['app', 'legacy']);
    expect(result.text).toContain('app = host=10.0.0.3 port=5434 dbname=app');
    expect(result.text).toContain('legacy = host=10.0.0.3 dbname=legacy port=5434');
    expect(result.text).toContain('reports = host=10.0.0.2 port=5432 dbname=app');
    expect(result.text).toContain('local = dbname=app');
    // Outside [databases] a "host =" line is PgBouncer's own setting: never touched.
    expect(result.text).toContain('[pgbouncer]\nlisten_port = 6432\nhost = 10.0.0.1\n');
    expect(result.text).toContain('; the application\n');
  });

  it('treats the loopback spellings as one host', () => {
    const result = repointIni(ini, { host: '127.0.0.1', port: 5433 }, { host: '127.0.0.1', port: 5440 });
    expect(result.entries).toEqual(['*']);
    expect(result.text).toContain('* = host=127.0.0.1 port=5440');
  });

  it('changes nothing when no entry points at the old primary', () => {
    const result = repointIni(ini, { host: '10.9.9.9', port: 5432 }, { host: '10.0.0.3', port: 5432 });
    expect(result.entries).toEqual([]);
    expect(result.text).toBe(ini);
  });
});
