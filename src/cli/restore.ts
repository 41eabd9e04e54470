/**
 * `pgwarden restore` (issue 5 item 9; docs/restore.md):
 *
 *   pgwarden restore (--repo DIR [--key ID=FILE | --key-env ID=VAR]... | --config FILE [--cluster NAME] [--repo NAME])
 *                    --to latest|<ISO time>|<LSN>|<backup id> --target-dir DIR [--start [--port N]] [--owner USER] [--keep-archiving]
 *                    [--tablespace-map OLDDIR=NEWDIR]...
 *
 * A backup of a cluster with tablespaces restores each one into its original location, or into
 * NEWDIR for a tablespace the backup recorded at OLDDIR; the target must be empty or absent.
 *
 * With --config, restore_command fetches WAL through the same config (every repository of the
 * cluster, in order), so a restore from the off-site copy still finds WAL the local one lacks.
 *
 * Exit codes: 0 restored (and with --start, recovery ended at the target); 1 the restore or the
 * recovery failed (the reason and the fix on stderr; a target never reached is reported in
 * capitals, rule 6); 2 bad usage, or a target the repository cannot reach (refused before
 * anything is written, with the recovery window). Progress lines go to stderr.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { messageOf } from '../errors.js';
import { parseRestoreTarget, restore, DamagedPartError, RecoveryFailedError, RestoreRefusedError, type RestoreOptions } from '../backup/restore.js';
import { parseTablespaceMapping } from '../backup/tablespaces.js';
import { UsageError } from './key-options.js';
import { chooseRepository, repositoryOptions } from './repository-choice.js';
import { describeError as describe, failure } from './command-output.js';
import type { CommandOutput } from './show.js';

const usage = 'pgwarden restore (--repo DIR [--key ID=FILE | --key-env ID=VAR]... | --config FILE [--cluster NAME] [--repo NAME]) --to latest|<ISO time>|<LSN>|<backup id> --target-dir DIR [--start [--port N]] [--owner USER] [--keep-archiving] [--tablespace-map OLDDIR=NEWDIR]...';

type Env = Readonly<Record<string, string | undefined>>;

export interface RestoreCommandOptions {
  readonly progress?: (line: string) => void;
  readonly env?: Env;
  /** How pgwarden is run, for restore_command (default: this node and this script). */
  readonly pgwarden?: readonly string[];
}



/** Runs `pgwarden restore …` (the arguments after "restore"). */
export async function restoreCommand(args: readonly string[], options: RestoreCommandOptions = {}): Promise<CommandOutput> {
  const env = options.env ?? process.env;
  let run: RestoreOptions;
  let close = (): void => undefined;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...args], allowPositionals: false, strict: true, tokens: true,
        options: {
          ...repositoryOptions,
          to: { type: 'string' }, 'target-dir': { type: 'string' }, start: { type: 'boolean' }, port: { type: 'string' },
          owner: { type: 'string' }, 'keep-archiving': { type: 'boolean' }, 'tablespace-map': { type: 'string', multiple: true },
        },
      });
    } catch (error) {
      throw new UsageError(messageOf(error));
    }
    const values = parsed.values;
    if (values.to === undefined) throw new UsageError('--to is required: latest, an ISO time with its zone, an LSN or a backup id');
    if (values['target-dir'] === undefined || values['target-dir'] === '') throw new UsageError('--target-dir DIR is required (an empty or new directory)');
    let port: number | undefined;
    if (values.port !== undefined) {
      if (values.start !== true) throw new UsageError('--port goes with --start');
      port = Number(values.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('--port takes a TCP port from 1 to 65535');
    }
    const tablespaceMap = (values['tablespace-map'] ?? []).map(parseTablespaceMapping);
    for (const [index, mapping] of tablespaceMap.entries()) {
      if (tablespaceMap.slice(0, index).some((other) => other.from === mapping.from)) throw new UsageError(`--tablespace-map maps ${mapping.from} twice`);
    }
    const choice = await chooseRepository(values, parsed.tokens, env);
    close = () => choice.close();
    run = {
      repository: choice.repository,
      keyring: choice.keyring,
      walFetchArgs: choice.walFetchArgs,
      pgwarden: options.pgwarden ?? [process.execPath, resolve(process.argv[1] ?? 'pgwarden')],
      target: parseRestoreTarget(values.to),
      targetDir: resolve(values['target-dir']),
      ...(values.owner === undefined ? {} : { owner: values.owner }),
      ...(values.start === true ? { start: port === undefined ? {} : { port } } : {}),
      ...(values['keep-archiving'] === true ? { keepArchiving: true } : {}),
      ...(tablespaceMap.length === 0 ? {} : { tablespaceMap }),
      ...(options.progress === undefined ? {} : { progress: options.progress }),
    };
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: restore: ${error.message}\n  usage: ${usage}`, 2);
    return failure(`pgwarden: restore: ${describe(error)}`, 2);
  }
  try {
    const result = await restore(run);
    const lines = [
      `restored backup ${result.backupId} into ${result.targetDir} (owner ${result.owner}; ${result.partsUnpacked} part(s) unpacked${result.partsSkipped > 0 ? `, ${result.partsSkipped} unpacked before` : ''})`,
      ...result.tablespaces.map((tablespace) => `tablespace ${tablespace.name} (oid ${tablespace.oid}) restored into ${tablespace.dir}${tablespace.mapped ? ' (mapped; tablespace_map points there)' : ''}`),
      ...result.settings.map((setting) => `  ${setting}`),
    ];
    const recovery = result.recovery;
    if (recovery === undefined) {
      lines.push(`start it as ${result.owner}: pg_ctl -D ${result.targetDir} start; it replays the archived WAL, then promotes`);
    } else {
      lines.push(
        `recovery ended: replayed to ${recovery.reachedLsn}, last transaction replayed ${recovery.reachedTime ?? 'none'}, now timeline ${recovery.timeline}, in ${(recovery.durationMs / 1000).toFixed(1)} s`,
        ...(recovery.stopLine === null ? [] : [`  ${recovery.stopLine.replace(/^.*?(recovery stopping)/, '$1')}`]),
        `the server runs on port ${recovery.port} (stop it with pg_ctl -D ${result.targetDir} stop)`,
      );
    }
    return { stdout: `${lines.join('\n')}\n`, stderr: '', exitCode: 0 };
  } catch (error) {
    if (error instanceof RecoveryFailedError || error instanceof DamagedPartError) return failure(`pgwarden: restore: ${describe(error)}`, 1);
    // Refusals before anything was written (target outside the window, non-empty or running directory) are usage-level.
    if (error instanceof RestoreRefusedError) return failure(`pgwarden: restore: ${describe(error)}`, 2);
    return failure(`pgwarden: restore failed: ${describe(error)}`, 1);
  } finally {
    close();
  }
}
