/**
 * The backup commands (backup, verify, restore, drill, backups, logical), switchover, failover and rejoin. Each has its own parser
 * (repeated --key options, flags the console does not have: docs/backups.md) and prints progress
 * lines on stderr. bin/pgwarden.js runs them through batch-main.ts, which loads neither meow nor
 * the probes nor the console: cron jobs, the watcher and recovery start them often.
 */
import { redact } from '../config/redact.js';
import type { CommandOutput } from './show.js';

/** The commands this module runs (bin/pgwarden.js names the same). */
export const batchCommandNames = ['backup', 'verify', 'restore', 'drill', 'backups', 'logical', 'switchover', 'failover', 'rejoin'] as const;

const progress = (line: string): void => void process.stderr.write(`${redact(line)}\n`);

/** Runs batch command `name` with `args` (the words after it), or undefined for another name. */
export async function batchCommand(name: string | undefined, args: readonly string[]): Promise<CommandOutput | undefined> {
  switch (name) {
    case 'backup':
    case 'verify': {
      const { backupCommand, verifyCommand } = await import('./backup.js');
      return (name === 'backup' ? backupCommand : verifyCommand)(args, { progress });
    }
    case 'restore': {
      const { restoreCommand } = await import('./restore.js');
      return restoreCommand(args, { progress });
    }
    case 'drill': {
      const { drillCommand } = await import('./drill.js');
      return drillCommand(args, { progress });
    }
    case 'backups': {
      const { backupsCommand } = await import('./backups.js');
      return backupsCommand(args);
    }
    case 'logical': {
      const { logicalCommand } = await import('./logical.js');
      return logicalCommand(args, { progress });
    }
    case 'switchover': {
      const { switchoverCommand } = await import('./switchover.js');
      return switchoverCommand(args, { progress, print: (text) => void process.stdout.write(redact(text)) });
    }
    case 'failover':
    case 'rejoin': {
      const { failoverCommand, rejoinCommand } = await import('./failover.js');
      return (name === 'failover' ? failoverCommand : rejoinCommand)(args, { progress, print: (text) => void process.stdout.write(redact(text)) });
    }
    default:
      return undefined;
  }
}
