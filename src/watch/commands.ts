/**
 * The command spool of a watcher: `<stateDir>/commands/`, one JSON file per operator command
 * (silence, acknowledge…) queued by the CLI or the console. The watcher takes them at the start of
 * each engine step, applies them, persists its state and only then removes the files, so a crash in
 * between applies them again (applyCommand is idempotent). A malformed file is moved aside to
 * `commands/rejected/` and reported, never fatal.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCommand, type AlertCommand } from '../alerts/commands.js';
import { writeFileAtomic } from '../atomic-file.js';
import { messageOf } from '../errors.js';

/** The spool directory under a state directory. */
export function commandsDir(stateDir: string): string {
  return join(stateDir, 'commands');
}

/** Where malformed command files are moved. */
export function rejectedDir(stateDir: string): string {
  return join(commandsDir(stateDir), 'rejected');
}

/** The file of a queued command. */
export function commandPath(stateDir: string, id: string): string {
  return join(commandsDir(stateDir), `${id}.json`);
}

/** One queued command and its id (the file name without .json). */
export interface QueuedCommand {
  readonly id: string;
  readonly command: AlertCommand;
}

/** What takeCommands found: the commands in queue order, and how to remove them once applied. */
export interface TakenCommands {
  readonly commands: readonly QueuedCommand[];
  /** Removes the files of the commands taken (call after the state that includes them is saved). */
  remove(): Promise<void>;
}

/** Ids sort in queue order: time first, then a random tail against collisions. */
function newId(): string {
  return `${Date.now().toString(36).padStart(9, '0')}-${randomBytes(4).toString('hex')}`;
}

/** Writes a command to the spool atomically (temp file, fsync, rename); returns its id. */
export async function queueCommand(stateDir: string, command: AlertCommand): Promise<string> {
  const dir = commandsDir(stateDir);
  await mkdir(dir, { recursive: true });
  const id = newId();
  await writeFileAtomic(dir, `${id}.json`, `${JSON.stringify(command)}\n`);
  return id;
}

/**
 * The queued commands, oldest first. A file that is not a valid command is moved to
 * commands/rejected/ and reported through `onRejected`; it is not among the commands.
 */
export async function takeCommands(stateDir: string, onRejected: (file: string, reason: string) => void = () => undefined): Promise<TakenCommands> {
  const dir = commandsDir(stateDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { commands: [], remove: () => Promise.resolve() };
    throw error;
  }
  const commands: QueuedCommand[] = [];
  for (const name of names.filter((file) => file.endsWith('.json') && !file.startsWith('.')).sort()) {
    const file = join(dir, name);
    const id = name.slice(0, -'.json'.length);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      // Removed in between (another taker): nothing to do.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    try {
      commands.push({ id, command: parseCommand(JSON.parse(text)) });
    } catch (error) {
      const reason = messageOf(error);
      await mkdir(rejectedDir(stateDir), { recursive: true });
      await rename(file, join(rejectedDir(stateDir), name)).catch(() => undefined);
      onRejected(file, reason);
    }
  }
  return {
    commands,
    remove: async () => {
      for (const { id } of commands) {
        await unlink(commandPath(stateDir, id)).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        });
      }
    },
  };
}
