/**
 * The environment of a PostgreSQL client program (pg_basebackup, pg_dump, pg_restore, psql,
 * pg_receivewal): the connection through libpq's PG* variables, so that a password never appears
 * on a command line (visible in ps to every user). The caller's own PG* variables are dropped so
 * that they cannot redirect the program elsewhere; PGPASSFILE is kept.
 */
import type { ConnectionSpec } from '../config/types.js';

export function libpqEnv(spec: ConnectionSpec, application: string, database: string = spec.database): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('PG')) env[name] = value;
  Object.assign(env, {
    PGHOST: spec.host,
    PGPORT: String(spec.port),
    PGUSER: spec.user,
    PGDATABASE: database,
    PGSSLMODE: spec.sslmode,
    PGAPPNAME: application,
    PGCONNECT_TIMEOUT: String(Math.max(2, Math.ceil(spec.connectTimeoutMs / 1000))),
  });
  if (spec.sslrootcert !== undefined) env['PGSSLROOTCERT'] = spec.sslrootcert;
  if (spec.password !== undefined) env['PGPASSWORD'] = spec.password;
  if (process.env['PGPASSFILE'] !== undefined) env['PGPASSFILE'] = process.env['PGPASSFILE'];
  return env;
}
