/**
 * Synchronous cleanup on every way a test process ends. Vitest ends fork workers with SIGTERM,
 * which skips 'exit' handlers, so the signals get the same cleanup, and are then re-raised so the
 * default action still happens when nobody else handles them.
 */
const cleanups = new Set<() => void>();
let installed = false;

function runAll(): void {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch {
      // Best effort while exiting.
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/** Runs `cleanup` (synchronous) when the process exits or is signalled. */
export function onProcessEnd(cleanup: () => void): void {
  cleanups.add(cleanup);
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(signal, onSignal);
}
