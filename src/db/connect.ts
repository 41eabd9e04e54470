import { readFileSync } from 'node:fs';
import type { ClientConfig } from 'pg';
import type { ConnectionSpec } from '../config/types.js';

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
  if (spec.password !== undefined) config.password = spec.password;
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
