/** Helpers for the watcher tests: NDJSON line collection, an in-process Watcher, and `pgwarden --watch` as a real process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import type { Config } from '../../src/config/types.js';
import { Watcher, type WatcherOptions } from '../../src/watch/watcher.js';

/** Splits a stream into lines as they arrive. */
export function collectLines(stream: Readable): string[] {
  const lines: string[] = [];
  let buffered = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
  });
  return lines;
}

/** The NDJSON events among the lines (other lines are ignored). */
export function parseEvents(lines: readonly string[]): Record<string, unknown>[] {
  return lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** Alert events of a check (and subject, cluster when given). */
export function alertEvents(lines: readonly string[], filter: { check: string; subject?: string; cluster?: string; kind?: string }): Record<string, unknown>[] {
  return parseEvents(lines).filter((event) =>
    event['type'] === 'alert' && event['check_id'] === filter.check &&
    (filter.subject === undefined || event['subject'] === filter.subject) &&
    (filter.cluster === undefined || event['cluster'] === filter.cluster) &&
    (filter.kind === undefined || event['kind'] === filter.kind));
}

export interface WatcherRun {
  readonly watcher: Watcher;
  readonly lines: string[];
  readonly logs: string[];
}

/** A started in-process Watcher with fast test intervals, its NDJSON lines and its log lines. */
export async function startWatcher(config: Config, options: Partial<WatcherOptions> = {}): Promise<WatcherRun> {
  const events = new PassThrough();
  const lines = collectLines(events);
  const logs: string[] = [];
  const watcher = new Watcher(config, {
    events,
    log: (line) => logs.push(line),
    cadenceMs: { fast: 500, normal: 60_000, slow: 3_600_000 },
    tickMs: 250,
    outbox: { initialBackoffMs: 300, maxBackoffMs: 1000 },
    ...options,
  });
  await watcher.start();
  return { watcher, lines, logs };
}

export interface WatchProcess {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

/** `node bin/pgwarden.js --watch --config FILE` with the test intervals (PGWARDEN_WATCH_INTERVALS_MS). */
export function spawnWatch(configFile: string, env: Readonly<Record<string, string>> = {}): WatchProcess {
  const child = spawn(process.execPath, ['bin/pgwarden.js', '--watch', '--config', configFile], {
    env: { ...process.env, PGWARDEN_WATCH_INTERVALS_MS: 'tick=250,fast=500', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout = collectLines(child.stdout);
  const stderr = collectLines(child.stderr);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout, stderr, exited };
}

/** Stops a spawned watcher that is still running (SIGTERM) and waits for its exit. */
export async function stopWatch(watch: WatchProcess | undefined): Promise<void> {
  if (watch === undefined || watch.child.exitCode !== null) return;
  watch.child.kill('SIGTERM');
  await watch.exited;
}
