/**
 * `pgwarden demo`: starts the demo (src/demo/start.ts), prints every view once and the DSNs, then
 * runs until Ctrl-C or SIGTERM and removes everything. A second Ctrl-C kills the servers instead
 * of stopping them. Exit code 0 when the demo was stopped by the user and cleaned up, 1 when
 * the setup failed or something could not be removed.
 */
import { show, type CommandOutput } from '../cli/show.js';
import { isUserError, messageOf } from '../errors.js';
import { probeIds } from '../probes/index.js';
import { startDemo, type Demo, type DemoOptions } from './start.js';

/** The terminal width for the printed views, and the setup choices a caller may make. */
export interface RunDemoOptions extends Pick<DemoOptions, 'parentDir' | 'ports' | 'applyDelayMs' | 'env'> {
  readonly width: number;
  /** Open the console on the demo when stdin and stdout are a terminal (else print the views and wait). */
  readonly console?: boolean;
}

type Write = (text: string) => void;

/** A second signal sooner than this after the first is the same one re-raised, not a second Ctrl-C. */
const sameSignalWindowMs = 500;

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** Runs the demo until SIGINT or SIGTERM; progress goes to stderr, the views and DSNs to stdout. */
export async function runDemo(options: RunDemoOptions): Promise<CommandOutput> {
  const out: Write = (text) => process.stdout.write(text);
  const err: Write = (text) => process.stderr.write(text);
  const interrupt = new AbortController();
  const force = new AbortController();
  let firstAt = 0;
  const onSignal = (name: NodeJS.Signals): void => {
    if (!interrupt.signal.aborted) {
      firstAt = Date.now();
      err(`\n${name}: stopping the demo and removing its files (press Ctrl-C again to kill it at once)…\n`);
      interrupt.abort();
    } else if (Date.now() - firstAt < sameSignalWindowMs) {
      // The same signal delivered twice (to the process group and to the process, say): not a second Ctrl-C.
    } else if (!force.signal.aborted) {
      err(`${name}: killing the demo's servers…\n`);
      force.abort();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let demo: Demo;
    try {
      demo = await startDemo({ ...options, progress: (line) => err(`${line}\n`), signal: interrupt.signal, forceSignal: force.signal });
    } catch (error) {
      if (interrupt.signal.aborted) return { stdout: '', stderr: 'demo interrupted during setup; everything it had created was removed\n', exitCode: 0 };
      if (!isUserError(error)) throw error;
      return { stdout: '', stderr: `pgwarden: ${error.message}\n${error.hint === undefined ? '' : `  hint: ${error.hint}\n`}`, exitCode: 1 };
    }
    let cleanupFailure: string | undefined;
    try {
      if (options.console === true && process.stdin.isTTY && process.stdout.isTTY) {
        // In a terminal the demo is watched through the console; quitting it ends the demo.
        const { runConsole } = await import('../app/console.js');
        await runConsole({ config: demo.config, readOnly: false, ascii: false, cluster: 'demo', node: 'primary' });
      } else {
        const printed = printViews(demo, options.width, out, err);
        await Promise.race([printed, untilAborted(interrupt.signal)]);
        if (!interrupt.signal.aborted) out(summary(demo));
        await untilAborted(interrupt.signal);
      }
    } finally {
      err(`stopping the workload, ${demo.dsns.pgbouncer === undefined ? '' : 'PgBouncer, '}the standby and the primary…\n`);
      await demo.stop().catch((error: unknown) => {
        cleanupFailure = messageOf(error);
      });
    }
    if (cleanupFailure !== undefined) return { stdout: '', stderr: `pgwarden: ${cleanupFailure}\n`, exitCode: 1 };
    return { stdout: '', stderr: `demo stopped; ${demo.dir} removed\n`, exitCode: 0 };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Every probe once on the primary (what the console will show), then the standby's own view of replication. */
async function printViews(demo: Demo, width: number, out: Write, err: Write): Promise<void> {
  try {
    const views = { json: false, cluster: 'demo', width };
    const primary = await show(demo.config, ['all'], { ...views, node: 'primary' });
    out(primary.stdout);
    err(primary.stderr);
    const standbyProbes = ['server', 'replication'].filter((id) => probeIds.some((known) => known === id));
    const standby = await show(demo.config, standbyProbes, { ...views, node: 'standby' });
    out(`\n${standby.stdout}`);
    err(standby.stderr);
  } catch (error) {
    err(`pgwarden: could not show the views: ${messageOf(error)}\n`);
  }
}

function summary(demo: Demo): string {
  const example = probeIds.some((id) => id === 'locks') ? 'locks' : 'activity';
  const lines = [
    '',
    'pgwarden demo is running.',
    '',
    `  primary     ${demo.dsns.primary}`,
    `  standby     ${demo.dsns.standby}`,
    ...(demo.dsns.pgbouncer === undefined ? [] : [`  pgbouncer   ${demo.dsns.pgbouncer}`, `  admin       ${demo.dsns.pgbouncerAdmin ?? ''}`]),
    `  directory   ${demo.dir}`,
    `  config      ${demo.configFile}`,
    ...demo.notes.map((note) => `  note        ${note}`),
    '',
    'In another terminal, try:',
    `  pgwarden show ${example} --dsn '${demo.dsns.primary}'`,
    `  pgwarden --config ${demo.configFile} show all --node standby`,
    '',
    'Press Ctrl-C to stop the demo and remove everything it created.',
    '',
  ];
  return lines.join('\n');
}
