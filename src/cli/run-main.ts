/**
 * How every entry point (cli.ts, batch-main.ts) ends: the command's output written, its exit code
 * set, and the process ended. A UserError is exit 2 with its hint; anything else is an internal
 * error, exit 70. Nothing printed is ever unredacted.
 */
import { redact } from '../config/redact.js';
import { isUserError, messageOf } from '../errors.js';
import type { CommandOutput } from './show.js';

export async function runMain(main: () => Promise<CommandOutput>): Promise<void> {
  try {
    const output = await main();
    process.stdout.write(output.stdout);
    process.stderr.write(output.stderr);
    process.exitCode = output.exitCode;
    // A batch command is done: exit even if the driver left a socket open (it does after a failed
    // SCRAM exchange, until the server's authentication_timeout). Writes to pipes, files and
    // terminals are synchronous on Linux, so nothing printed is lost.
    process.exit();
  } catch (error) {
    if (isUserError(error)) {
      process.stderr.write(`pgwarden: ${redact(error.message)}\n${error.hint === undefined ? '' : `  hint: ${error.hint}\n`}`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`pgwarden: internal error: ${redact(messageOf(error))}\n${error instanceof Error ? redact(error.stack ?? '') : ''}\n`);
      process.exitCode = 70;
    }
  }
}
