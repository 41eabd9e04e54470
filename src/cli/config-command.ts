/** `pgwarden config`: where the config comes from and what it resolves to, passwords hidden. */
import { describeBackupPlan, resolveBackupPlan } from '../config/backups.js';
import { describeConnection } from '../config/conninfo.js';
import type { Config } from '../config/types.js';
import type { CommandOutput } from './show.js';

/** The effective configuration as text; passwords are never printed, only whether one is set. */
export function describeConfig(config: Config): CommandOutput {
  const lines = [`config: ${config.source}`, `refresh: ${config.refreshMs} ms, statement_timeout: ${config.statementTimeoutMs} ms, lock_timeout: ${config.lockTimeoutMs} ms`];
  for (const cluster of config.clusters) {
    lines.push(`cluster ${cluster.name}`);
    for (const node of cluster.nodes) {
      const c = node.connection;
      lines.push(`  node ${node.name}: ${describeConnection(c)} sslmode=${c.sslmode} password=${c.password === undefined ? 'from ~/.pgpass if any' : 'set'}`);
    }
    if (cluster.pgbouncer !== undefined) lines.push(`  pgbouncer: ${describeConnection(cluster.pgbouncer.connection)}`);
    const plan = resolveBackupPlan(config, cluster.name);
    lines.push(...(plan === undefined ? ['  backups: none configured (see backups in docs/configuration.md)'] : describeBackupPlan(plan)));
  }
  for (const [id, settings] of Object.entries(config.probes)) {
    lines.push(`probe ${id}: ${settings.enabled ? 'enabled' : 'disabled'}${settings.cadenceMs === undefined ? '' : `, every ${settings.cadenceMs} ms`}${settings.timeoutMs === undefined ? '' : `, timeout ${settings.timeoutMs} ms`}`);
  }
  return { stdout: `${lines.join('\n')}\n`, stderr: '', exitCode: 0 };
}
