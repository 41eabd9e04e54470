/** `pgwarden logical` (being written). */
import type { CommandOutput } from './show.js';

export interface LogicalCommandOptions {
  readonly progress?: (line: string) => void;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function logicalCommand(_args: readonly string[], options: LogicalCommandOptions = {}): Promise<CommandOutput> {
  options.progress?.("not built");
  return Promise.resolve({ stdout: '', stderr: 'pgwarden: logical: not built yet\n', exitCode: 2 });
}
