// A WalReceiver (src/backup/wal/receive.ts, from dist/) in a process of its own as the postgres
// user, as archive_command runs: both then write into the repository as one user (a root test
// process would leave objects the archiver cannot read). It prints each event as a JSON line,
// which the test collects, and stops cleanly when its stdin closes.
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { WalReceiverEvent } from '../../src/backup/wal/receive.js';

const DIST = join(resolve(import.meta.dirname, '../..'), 'dist');

const script = `
const [dsn, spoolDir, repo, pgBin, cluster, compression] = process.argv.slice(1);
const { WalReceiver } = await import('${DIST}/backup/wal/receive.js');
const { LocalRepository } = await import('${DIST}/backup/repository/local.js');
const { resolveConnection } = await import('${DIST}/config/conninfo.js');
const receiver = new WalReceiver({
  connection: resolveConnection(dsn, 'the test cluster'), cluster, spoolDir,
  repositories: [new LocalRepository(repo)], compression, pgBin, slotCheckMs: 500, statusIntervalS: 1,
  onEvent: (event) => process.stdout.write(JSON.stringify(event) + '\\n'),
});
await receiver.start();
process.stdin.on('end', () => { receiver.stop().then(() => process.exit(0), () => process.exit(1)); });
process.stdin.resume();
`;

export interface ReceiverProcess {
  readonly events: WalReceiverEvent[];
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export interface ReceiverOptions {
  readonly dsn: string;
  /** An existing directory of the postgres user. */
  readonly spool: string;
  readonly repo: string;
  readonly pgBin: string;
  /** The cluster name (its slot is pgwarden_<name in lower case with underscores>). */
  readonly cluster: string;
  readonly compression: 'auto' | 'gzip' | 'zstd' | 'none';
}

export function startReceiver(options: ReceiverOptions): ReceiverProcess {
  const args = [options.dsn, options.spool, options.repo, options.pgBin, options.cluster, options.compression];
  const child = spawn('runuser', ['-u', 'postgres', '--', process.execPath, '--input-type=module', '-e', script, ...args], {
    cwd: options.spool, stdio: ['pipe', 'pipe', 'inherit'],
  });
  const events: WalReceiverEvent[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => events.push(JSON.parse(line) as WalReceiverEvent));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return {
    events,
    child,
    stop: async () => {
      child.stdin.end();
      await exited;
    },
  };
}
