/**
 * Keypress-to-frame latency of the real console in a real terminal (tmux), for bench/render. A
 * tmux control-mode client sends the key and polls capture-pane without starting a tmux process
 * per poll (which alone costs a few milliseconds), so the figure is the console's latency plus
 * tmux's own (reading the pty, updating its grid, answering capture-pane).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import type { Terminal } from '../test/support/terminal.js';

/** A tmux control-mode client (`tmux -C`): one command at a time, answers in order. */
export class ControlClient {
  private readonly child: ChildProcessWithoutNullStreams;
  private buffer = '';
  private block: string[] | null = null;
  private readonly waiting: ((lines: readonly string[]) => void)[] = [];

  constructor(socket: string, session: string) {
    this.child = spawn('tmux', ['-L', socket, '-C', 'attach-session', '-t', session], { stdio: 'pipe' });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => this.onData(chunk));
    // The attach itself answers with one (empty) block: take it like any other.
    this.waiting.push(() => undefined);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline = this.buffer.indexOf('\n');
    while (newline >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 1);
      if (this.block === null) {
        if (line.startsWith('%begin')) this.block = [];
      } else if (line.startsWith('%end') || line.startsWith('%error')) {
        const done = this.block;
        this.block = null;
        this.waiting.shift()?.(done);
      } else {
        this.block.push(line);
      }
      newline = this.buffer.indexOf('\n');
    }
  }

  /** Runs one tmux command; resolves with its output lines. */
  command(text: string): Promise<readonly string[]> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin.write(`${text}\n`);
    });
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

/** The pid on the selected row ('>' in the gutter) of an Activity screen, or null. */
function selectedPid(lines: readonly string[]): number | null {
  const line = lines.find((candidate) => candidate.startsWith('>'));
  const pid = line === undefined ? undefined : /^>\s*(\d+)/.exec(line)?.[1];
  return pid === undefined ? null : Number(pid);
}

/** Latency samples in ms, and how many polls a press took on average. */
export interface Latency {
  readonly samples: readonly number[];
  readonly pollsPerPress: number;
}

/**
 * Presses j (then k, alternately, so the selection stays near the top) `presses` times; each
 * time, the time from sending the key to the first capture that shows another pid selected.
 * Moving by key is immune to refreshes: the selection follows the session, not the line.
 */
export async function keypressLatency(terminal: Terminal, presses: number): Promise<Latency> {
  const client = new ControlClient(terminal.socket, terminal.session);
  const target = terminal.pane;
  try {
    await client.command('display-message -p ok');
    const samples: number[] = [];
    let polls = 0;
    for (let i = 0; i < presses; i += 1) {
      const before = selectedPid(await client.command(`capture-pane -p -t ${target}`));
      if (before === null) throw new Error('no selected row on the screen');
      const key = i % 2 === 0 ? 'j' : 'k';
      const start = performance.now();
      await client.command(`send-keys -t ${target} -l ${key}`);
      for (;;) {
        polls += 1;
        const now = selectedPid(await client.command(`capture-pane -p -t ${target}`));
        if (now !== null && now !== before) break;
        if (performance.now() - start > 5000) throw new Error(`the selection did not move within 5 s of pressing ${key}`);
        await delay(2);
      }
      samples.push(performance.now() - start);
      // Let the frame settle (and a refresh land now and then) before the next press.
      await delay(60);
    }
    return { samples, pollsPerPress: polls / presses };
  } finally {
    client.close();
  }
}

/** Resident memory of the console process running in the pane (the child of the pane's shell), in MB. */
export async function consoleRss(terminal: Terminal): Promise<number | null> {
  const shell = Number(await terminal.display('#{pane_pid}'));
  try {
    const children = readFileSync(`/proc/${shell}/task/${shell}/children`, 'utf8').trim().split(/\s+/).map(Number);
    for (const pid of children) {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rss = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
      if (rss !== undefined) return Number(rss) / 1024;
    }
  } catch {
    return null;
  }
  return null;
}
