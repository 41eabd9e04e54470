/** Every check, in one explicit list (the order of docs/alerts.md), and per-cluster threshold overrides. */
import { customSqlCheck, httpEndpointCheck } from './application.js';
import { backupsCheck } from './backups.js';
import { deadlocksCheck, multixactWraparoundCheck, xidWraparoundCheck } from './databases.js';
import { failoverCheck } from './failover.js';
import { monitorCheck } from './monitor.js';
import { replicationLagCheck, replicationSlotsCheck, splitBrainCheck, walArchivingCheck } from './replication.js';
import { sequencesCheck } from './sequences.js';
import { connectionsCheck, connectivityCheck, poolerCheck, restartCheck } from './server.js';
import { idleInTransactionCheck, lockWaitsCheck, longQueryCheck, oldestTransactionCheck } from './sessions.js';
import { slowQueriesCheck } from './statements.js';
import { timeoutsCheck } from './timeouts.js';
import { checkpointsCheck, diskCheck, walSizeCheck } from './storage.js';
import { autovacuumCheck, bloatCheck, invalidIndexesCheck } from './tables.js';
import type { Check, Thresholds } from './types.js';

/** The catalogue. */
export const checks: readonly Check[] = [
  connectivityCheck,
  restartCheck,
  connectionsCheck,
  poolerCheck,
  idleInTransactionCheck,
  longQueryCheck,
  oldestTransactionCheck,
  lockWaitsCheck,
  timeoutsCheck,
  deadlocksCheck,
  replicationLagCheck,
  replicationSlotsCheck,
  walArchivingCheck,
  splitBrainCheck,
  failoverCheck,
  xidWraparoundCheck,
  multixactWraparoundCheck,
  autovacuumCheck,
  bloatCheck,
  invalidIndexesCheck,
  sequencesCheck,
  diskCheck,
  walSizeCheck,
  checkpointsCheck,
  slowQueriesCheck,
  backupsCheck,
  httpEndpointCheck,
  customSqlCheck,
  monitorCheck,
] as readonly Check[];

/** The check with this id, or undefined. */
export function checkById(id: string): Check | undefined {
  return checks.find((check) => check.id === id);
}

/**
 * The check's defaults with a cluster's overrides applied. An unknown name or a value that is not
 * a finite number throws, so a typo in the config is reported instead of silently ignored.
 */
export function resolveThresholds<T extends Thresholds>(check: Check<T>, overrides: Readonly<Record<string, unknown>> | undefined): T {
  const resolved: Record<string, number> = { ...check.defaults };
  for (const [name, value] of Object.entries(overrides ?? {})) {
    if (!(name in check.defaults)) {
      const known = Object.keys(check.defaults);
      throw new Error(`check ${check.id} has no threshold "${name}"${known.length === 0 ? ' (it has none)' : ` (known: ${known.join(', ')})`}`);
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`check ${check.id}: threshold "${name}" must be a number, not ${JSON.stringify(value)}`);
    resolved[name] = value;
  }
  return resolved as T;
}
