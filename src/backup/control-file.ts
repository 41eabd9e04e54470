/**
 * The cluster state in global/pg_control, read without connecting: a restored server is polled
 * through it every few milliseconds until it leaves recovery, where a psql per poll would cost
 * tens of milliseconds each. Only a hint: the caller confirms with pg_is_in_recovery().
 */
import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';

/** ControlFileData.state (src/include/catalog/pg_control.h), the same in every supported version. */
export type ClusterState = 'starting up' | 'shut down' | 'shut down in recovery' | 'shutting down' | 'in crash recovery' | 'in archive recovery' | 'in production';

const states: readonly ClusterState[] = ['starting up', 'shut down', 'shut down in recovery', 'shutting down', 'in crash recovery', 'in archive recovery', 'in production'];

/** `state` (native byte order) follows system_identifier (8 bytes), pg_control_version and catalog_version_no (4 each). */
const STATE_OFFSET = 16;

/** The state pg_control records, or undefined when the file cannot be read or holds no known state. */
export async function clusterState(dataDir: string): Promise<ClusterState | undefined> {
  let file;
  try {
    file = await open(join(dataDir, 'global', 'pg_control'), 'r');
    const { bytesRead, buffer } = await file.read(Buffer.alloc(4), 0, 4, STATE_OFFSET);
    if (bytesRead !== 4) return undefined;
    return states[endianness() === 'LE' ? buffer.readUInt32LE(0) : buffer.readUInt32BE(0)];
  } catch {
    return undefined;
  } finally {
    await file?.close();
  }
}
