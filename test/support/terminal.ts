/**
 * A real pseudo-terminal for end-to-end tests: each terminal is a detached tmux session on its
 * own server (`tmux -L <unique socket>`), so tests never touch the user's tmux and can be torn
 * down whole. The command runs as `sh -c '<command>; echo "__EXIT__ $?"'` in a pane that stays
 * after it exits, so the exit status can be read off the screen.
 */
import { execFile, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { displayWidth } from '../../src/format/text-table.js';

const tmuxPath = process.env['PGWARDEN_TEST_TMUX'] ?? 'tmux';
const sessionName = 'e2e';
const exitMarker = '__EXIT__';

/** Where the terminal is, how big, and what its command sees. */
export interface TerminalOptions {
  readonly columns?: number;
  readonly rows?: number;
  /** Added to (or, with `undefined`, removed from) the inherited environment. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Working directory of the command (default: this process's). */
  readonly cwd?: string;
}

/** One tmux session running one command. */
export interface Terminal {
  /** The tmux socket name (`tmux -L <socket>`), for tmux commands the driver does not wrap. */
  readonly socket: string;
  /** The tmux session and the pane the command runs in, as tmux targets. */
  readonly session: string;
  readonly pane: string;
  /** The visible screen as text, one line per row, trailing blanks trimmed. */
  screen(): Promise<string>;
  /** The visible screen with its attributes as escape sequences (colours, bold). */
  ansiScreen(): Promise<string>;
  /** The scrollback and the visible screen, oldest line first. */
  history(): Promise<string>;
  /** The visible rows, wrapped lines joined back together and trailing spaces kept (for width checks). */
  joinedLines(): Promise<readonly string[]>;
  /** Polls the screen until it contains the text (or matches the pattern); returns that screen. */
  waitForText(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Polls the screen until the check passes; the error carries `what` and the last screen. */
  waitForScreen(what: string, check: (screen: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Sends keys one send-keys call each: a single character literally, anything longer as a tmux key name ('Enter', 'Escape', 'C-l'). */
  press(...keys: readonly string[]): Promise<void>;
  /** Sends text literally, in one send-keys call (so it arrives as one chunk). */
  type(text: string): Promise<void>;
  /** Resizes the window (the pane's program gets SIGWINCH). */
  resize(columns: number, rows: number): Promise<void>;
  /** A tmux format for the pane, e.g. '#{cursor_flag}', '#{alternate_on}', '#{pane_pid}'. */
  display(format: string): Promise<string>;
  /** The command's exit status once it has ended, or null while it runs. */
  exitCode(): Promise<number | null>;
  /** Waits for the command to end and returns its exit status. */
  waitForExit(timeoutMs?: number): Promise<number>;
  /** Ends the session and its tmux server; safe to call twice. */
  kill(): Promise<void>;
}

const live = new Set<Terminal>();
/** Socket name → socket file of every tmux server still running, for the exit hook. */
const servers = new Map<string, string>();
let counter = 0;
let exitHookInstalled = false;

// A test run that ends abruptly (a worker killed on timeout) must not leave consoles running.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [socket, path] of servers) {
      spawnSync(tmuxPath, ['-L', socket, 'kill-server'], { stdio: 'ignore', timeout: 2000 });
      if (path !== '') rmSync(path, { force: true });
    }
  });
}

function tmux(socket: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tmuxPath, ['-L', socket, '-f', '/dev/null', ...args], { env: env ?? process.env, timeout: 10_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`tmux ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * The environment a user's shell would give the command: no CI (Ink would print only the last
 * frame), no test runner's NODE_ENV (the launcher must choose production itself), no outer tmux.
 */
function childEnv(extra: Readonly<Record<string, string | undefined>>): NodeJS.ProcessEnv {
  const dropped = (key: string): boolean => key === 'CI' || key === 'NODE_ENV' || key === 'TMUX' || key === 'TMUX_PANE' || key.startsWith('VITEST');
  const merged: Record<string, string | undefined> = { ...process.env, TERM: 'xterm-256color', LANG: process.env['LANG'] ?? 'C.UTF-8', ...extra };
  return Object.fromEntries(Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined && !dropped(entry[0])));
}

function matches(screen: string, pattern: RegExp | string): boolean {
  return typeof pattern === 'string' ? screen.includes(pattern) : pattern.test(screen);
}

/** Starts `command` (a shell command line) in a fresh detached tmux session. */
export async function start(command: string, options: TerminalOptions = {}): Promise<Terminal> {
  const columns = options.columns ?? 80;
  const rows = options.rows ?? 24;
  counter += 1;
  const socket = `pgwarden-e2e-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
  const env = childEnv(options.env ?? {});
  const target = `${sessionName}:0.0`;
  // One tmux invocation: the options are in place before the command can exit, and tmux's own
  // environment (which the pane inherits) is the one built above.
  await tmux(
    socket,
    [
      'start-server', ';',
      // Otherwise the new server exits before the session below exists.
      'set-option', '-g', 'exit-empty', 'off', ';',
      'set-option', '-g', 'remain-on-exit', 'on', ';',
      'set-option', '-g', 'default-terminal', 'tmux-256color', ';',
      'set-option', '-g', 'status', 'off', ';',
      'new-session', '-d', '-s', sessionName, '-x', String(columns), '-y', String(rows), ...(options.cwd === undefined ? [] : ['-c', options.cwd]),
      'sh', '-c', `${command}; echo "${exitMarker} $?"`, ';',
      // tmux 3.3 sizes windows after attached clients unless told otherwise (there are none here).
      // Set after the session exists: set globally on an empty server, it crashes tmux 3.3a.
      'set-option', '-w', '-t', sessionName, 'window-size', 'manual',
    ],
    env,
  );

  // tmux leaves its socket file behind when the server is killed: remember it to remove it.
  const socketPath = (await tmux(socket, ['display-message', '-p', '#{socket_path}'])).trim();
  servers.set(socket, socketPath);
  installExitHook();
  let killed = false;
  const capture = (extra: readonly string[]): Promise<string> => tmux(socket, ['capture-pane', '-p', ...extra, '-t', target]);
  const screen = async (): Promise<string> => (await capture([])).replace(/\n$/, '');

  const terminal: Terminal = {
    socket,
    session: sessionName,
    pane: target,
    screen,
    ansiScreen() {
      return capture(['-e']);
    },
    history() {
      return capture(['-S', '-', '-E', '-']);
    },
    async joinedLines() {
      return (await capture(['-J'])).replace(/\n$/, '').split('\n');
    },
    async waitForScreen(what, check, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      let last = '';
      for (;;) {
        last = await screen();
        if (check(last)) return last;
        if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the screen was:\n${last}`);
        await delay(25);
      }
    },
    waitForText(pattern, timeoutMs = 10_000) {
      return terminal.waitForScreen(`"${String(pattern)}"`, (text) => matches(text, pattern), timeoutMs);
    },
    async press(...keys) {
      for (const key of keys) {
        // One character is sent literally (tmux would read ';' or a digit as syntax otherwise).
        await tmux(socket, ['send-keys', '-t', target, ...(key.length === 1 ? ['-l', key] : [key])]);
      }
    },
    async type(text) {
      await tmux(socket, ['send-keys', '-t', target, '-l', text]);
    },
    async resize(newColumns, newRows) {
      await tmux(socket, ['resize-window', '-t', sessionName, '-x', String(newColumns), '-y', String(newRows)]);
    },
    async display(format) {
      return (await tmux(socket, ['display-message', '-p', '-t', target, format])).trim();
    },
    async exitCode() {
      if ((await terminal.display('#{pane_dead}')) !== '1') return null;
      // The marker is on the normal screen; scrollback too, in case the output scrolled it away.
      const text = await capture(['-S', '-', '-E', '-']);
      const found = [...text.matchAll(new RegExp(`^${exitMarker} (\\d+)$`, 'gm'))].pop();
      return found?.[1] === undefined ? null : Number(found[1]);
    },
    async waitForExit(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const code = await terminal.exitCode();
        if (code !== null) return code;
        if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the command to exit; the screen was:\n${await screen()}`);
        await delay(25);
      }
    },
    async kill() {
      if (killed) return;
      killed = true;
      live.delete(terminal);
      // kill-server ends the pane's processes with SIGHUP, like closing a terminal window.
      await tmux(socket, ['kill-server']).catch(() => undefined);
      if (socketPath !== '') await rm(socketPath, { force: true });
      servers.delete(socket);
    },
  };
  live.add(terminal);
  return terminal;
}

/** Kills every terminal this process started and has not killed yet (for afterEach/afterAll). */
export async function killAll(): Promise<void> {
  await Promise.allSettled([...live].map((terminal) => terminal.kill()));
}

/** Lines whose display width exceeds `columns` (wide characters count two). */
export function overwideLines(lines: readonly string[], columns: number): readonly string[] {
  return lines.filter((line) => displayWidth(line) > columns);
}

/** The text inside the dialog's border, wrapped lines joined back with spaces. */
export function dialogText(screen: string): string {
  return screen
    .split('\n')
    .filter((line) => line.startsWith('│'))
    .map((line) => line.replace(/^│\s?/, '').replace(/\s*│$/, '').trim())
    .join(' ')
    .replace(/\s+/g, ' ');
}

/**
 * Waits for a whole dialog whose text contains `title`: its top border, the title, and its bottom
 * border below them, so a frame the terminal has only partly drawn is never read as the dialog.
 */
export async function waitForDialog(terminal: Terminal, title: string | RegExp, timeoutMs?: number): Promise<string> {
  const screen = await terminal.waitForScreen(`a whole dialog with "${String(title)}"`, (text) => {
    const lines = text.split('\n');
    const top = lines.findIndex((line) => line.startsWith('╭'));
    const bottom = lines.findIndex((line, index) => index > top && line.startsWith('╰'));
    const inside = dialogText(lines.slice(top, bottom + 1).join('\n'));
    return top >= 0 && bottom > top && (typeof title === 'string' ? inside.includes(title) : title.test(inside));
  }, timeoutMs);
  return dialogText(screen);
}
