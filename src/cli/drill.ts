/** `pgwarden drill` (being written). */
import type { CommandOutput } from './show.js';

export interface DrillCommandOptions {
  readonly progress?: (line: string) => void;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function drillCommand(_args: readonly string[], options: DrillCommandOptions = {}): Promise<CommandOutput> {
  options.progress?.("not built");
  return Promise.resolve({ stdout: '', stderr: 'pgwarden: drill: not built yet\n', exitCode: 2 });
}
