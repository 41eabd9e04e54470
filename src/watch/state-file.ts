/** The watcher's persisted state: the alert engine's state and each check's nextState, in one JSON file. */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { initialEngineState } from '../alerts/engine.js';
import type { EngineState } from '../alerts/types.js';

/** What survives a restart. */
export interface WatchState {
  readonly engine: EngineState;
  /** "cluster/node/checkId" → what the check's nextState() returned last. */
  readonly checks: Readonly<Record<string, unknown>>;
}

interface StoredState {
  readonly version: 1;
  readonly engine: EngineState;
  readonly checks: Readonly<Record<string, unknown>>;
}

/** The file name of the state under the state directory. */
export const stateFileName = 'watch-state.json';

/** The persisted state, or a fresh one when there is none yet. A corrupt file throws: starting blank would resend every firing notice. */
export async function loadWatchState(stateDir: string): Promise<WatchState> {
  let text: string;
  try {
    text = await readFile(join(stateDir, stateFileName), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { engine: initialEngineState(), checks: {} };
    throw error;
  }
  const stored = JSON.parse(text) as StoredState;
  if (stored.version !== 1) throw new Error(`${join(stateDir, stateFileName)}: unknown state version ${String(stored.version)}`);
  return { engine: stored.engine, checks: stored.checks };
}

/** Writes the state so that the file is always either the old or the new one (temp file, fsync, rename). */
export async function saveWatchState(stateDir: string, state: WatchState): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  const stored: StoredState = { version: 1, engine: state.engine, checks: state.checks };
  await writeFileAtomic(stateDir, stateFileName, `${JSON.stringify(stored)}\n`);
}
