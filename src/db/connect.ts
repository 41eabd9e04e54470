import { readFileSync } from 'node:fs';
import type { ClientConfig } from 'pg';
import type { ConnectionSpec } from '../config/types.js';
import { pgpassPassword } from '../config/pgpass.js';

/** The application_name pgwarden's sessions carry; probes exclude sessions whose name starts with it. */
export const applicationName = 'pgwarden';

/** The pg driver settings for a connection spec (libpq's sslmode semantics mapped onto Node's TLS). */
export function clientConfig(spec: ConnectionSpec, application: string = applicationName): ClientConfig {
  const config: ClientConfig = {
    host: spec.host,
    port: spec.port,
    user: spec.user,
    database: spec.database,
    application_name: application,
    connectionTimeoutMillis: spec.connectTimeoutMs,
    keepAlive: true,
  };
  // The driver's own ~/.pgpass lookup is deprecated: read it here, as libpq would. With no password
  // at all, an empty one makes a server that wants one answer 28P01, which names the fix.
  config.password = spec.password ?? pgpassPassword(spec) ?? '';
  // prefer/allow fall back to plain text, as libpq does when the server has no TLS; pg cannot
  // negotiate, so they connect without TLS. require encrypts without verifying, as libpq does.
  switch (spec.sslmode) {
    case 'require':
      config.ssl = { rejectUnauthorized: false };
      break;
    case 'verify-ca':
    case 'verify-full': {
      const ca = spec.sslrootcert === undefined ? undefined : readFileSync(spec.sslrootcert, 'utf8');
      config.ssl = {
        rejectUnauthorized: true,
        ...(ca === undefined ? {} : { ca }),
        ...(spec.sslmode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
      };
      break;
    }
    default:
      config.ssl = false;
  }
  return config;
}
