/**
 * `pgwarden alerts list|silence|unsilence|ack|unack`: the operator's side of a running watcher.
 * `list` reads `<stateDir>/watch-state.json`; the others check their input against it and queue a
 * command in `<stateDir>/commands/` (src/watch/commands.ts), then wait (15 s by default) for the
 * watcher to take it: "applied by the watcher", or "queued" when no watcher runs. Usage errors exit 2.
 */
import { randomBytes } from 'node:crypto';
import { access, readdir, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { AlertCommand } from '../alerts/commands.js';
import { globMatch } from '../alerts/glob.js';
import { hashText } from '../alerts/grouping.js';
import { activeSilence } from '../alerts/silences.js';
import type { AlertRecord, EngineState, Silence } from '../alerts/types.js';
import { checks as catalogue } from '../checks/catalogue.js';
import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { renderTextTable } from '../format/text-table.js';
import { formatDuration } from '../format/units.js';
import { commandPath, commandsDir, queueCommand, rejectedDir } from '../watch/commands.js';
import { loadWatchState, stateFileName } from '../watch/state-file.js';
import type { CommandOutput } from './show.js';

/** The alerts subcommands this module handles. */
export const manageCommands = ['list', 'silence', 'unsilence', 'ack', 'unack'] as const;
export type ManageCommand = (typeof manageCommands)[number];

export interface AlertsManageOptions {
  readonly json: boolean;
  /** silence matchers. */
  readonly check?: string | undefined;
  readonly cluster?: string | undefined;
  readonly node?: string | undefined;
  readonly subject?: string | undefined;
  /** silence duration: 30m, 2h, 1d, 1h30m. */
  readonly for?: string | undefined;
  readonly comment?: string | undefined;
  /** How long to wait for a watcher to take the command (default 15 s; 0: do not wait). */
  readonly waitMs?: number | undefined;
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  readonly now?: Date | undefined;
}

const defaultWaitMs = 15_000;
const pollMs = 100;
const maxSilenceMs = 90 * 86_400_000;

function usage(message: string): CommandOutput {
  return { stdout: '', stderr: `pgwarden: ${message}\n`, exitCode: 2 };
}

/** "30m", "2h", "1d", "1h30m", "45s" → milliseconds; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text.trim());
  if (match === null || text.trim() === '') return undefined;
  const [, d = '0', h = '0', m = '0', s = '0'] = match;
  const ms = ((Number(d) * 24 + Number(h)) * 60 + Number(m)) * 60_000 + Number(s) * 1000;
  return ms > 0 ? ms : undefined;
}

/** The short id of an alert, as `alerts list` shows it and `alerts ack` accepts it. */
export function alertId(key: string): string {
  return hashText(key).slice(0, 8);
}

/** cluster/node/check/subject: how an alert is named on the command line. */
export function alertLabel(alert: Pick<AlertRecord, 'cluster' | 'node' | 'checkId' | 'subject'>): string {
  return `${alert.cluster}/${alert.node}/${alert.checkId}/${alert.subject}`;
}

/** Who is running the command: $PGWARDEN_USER, else the user sudo came from, else the OS user. */
export function commandAuthor(env: Readonly<Record<string, string | undefined>>): string {
  const named = env['PGWARDEN_USER'] ?? env['SUDO_USER'];
  if (named !== undefined && named.trim() !== '') return named.trim();
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** The outcome of looking an alert up by key, short id or label prefix. */
export type AlertMatch =
  | { readonly kind: 'found'; readonly alert: AlertRecord }
  | { readonly kind: 'none'; readonly candidates: readonly AlertRecord[] }
  | { readonly kind: 'ambiguous'; readonly candidates: readonly AlertRecord[] };

/**
 * Finds one alert among `candidates` by its full key, its short id, its label, or a prefix of the
 * short id or label. An exact match wins over prefixes; several prefix matches are ambiguous.
 */
export function findAlert(candidates: readonly AlertRecord[], query: string): AlertMatch {
  const exact = candidates.filter((alert) => alert.key === query || alertId(alert.key) === query || alertLabel(alert) === query);
  if (exact.length === 1 && exact[0] !== undefined) return { kind: 'found', alert: exact[0] };
  const prefixed = exact.length > 1 ? exact : candidates.filter((alert) => query !== '' && (alertId(alert.key).startsWith(query) || alertLabel(alert).startsWith(query)));
  if (prefixed.length === 1 && prefixed[0] !== undefined) return { kind: 'found', alert: prefixed[0] };
  return prefixed.length === 0 ? { kind: 'none', candidates } : { kind: 'ambiguous', candidates: prefixed };
}

function listCandidates(candidates: readonly AlertRecord[]): string {
  if (candidates.length === 0) return '  (none)\n';
  return candidates.map((alert) => `  ${alertId(alert.key)}  ${alertLabel(alert)}  (${alert.status} ${alert.severity})\n`).join('');
}

const statusOrder: Readonly<Record<AlertRecord['status'], number>> = { firing: 0, unknown: 1, pending: 2, resolved: 3 };

function silenceMatchers(silence: Silence): string {
  const parts = [
    silence.cluster === undefined ? undefined : `cluster=${silence.cluster}`,
    silence.node === undefined ? undefined : `node=${silence.node}`,
    silence.checkId === undefined ? undefined : `check=${silence.checkId}`,
    silence.subject === undefined ? undefined : `subject=${silence.subject}`,
  ];
  return parts.filter((part) => part !== undefined).join(' ');
}

function ago(from: number, now: Date): string {
  return `${formatDuration(Math.max(0, Math.round((now.getTime() - from) / 1000)))} ago`;
}

/** One alert as `alerts list --json` shows it. */
interface ListedAlert {
  readonly id: string;
  readonly key: string;
  readonly cluster: string;
  readonly node: string;
  readonly checkId: string;
  readonly subject: string;
  readonly status: AlertRecord['status'];
  readonly severity: AlertRecord['severity'];
  readonly message: string;
  readonly firstSeen: Date;
  readonly firingSince: Date | null;
  readonly resolvedAt: Date | null;
  readonly flapping: boolean;
  readonly acknowledged: { readonly by: string; readonly at: Date; readonly comment: string } | null;
  readonly silencedBy: string | null;
}

/** The alerts and silences of a watcher state, worst first, for `alerts list`. */
export function listState(state: EngineState, now: Date): { alerts: ListedAlert[]; silences: Silence[] } {
  const silences = state.silences.filter((silence) => silence.endsAt > now.getTime());
  const alerts = Object.values(state.alerts)
    .sort((a, b) => statusOrder[a.status] - statusOrder[b.status] || (a.key < b.key ? -1 : 1))
    .map((alert): ListedAlert => ({
      id: alertId(alert.key),
      key: alert.key,
      cluster: alert.cluster,
      node: alert.node,
      checkId: alert.checkId,
      subject: alert.subject,
      status: alert.status,
      severity: alert.severity,
      message: alert.finding.message,
      firstSeen: new Date(alert.firstSeen),
      firingSince: alert.firingSince === null ? null : new Date(alert.firingSince),
      resolvedAt: alert.resolvedAt === null ? null : new Date(alert.resolvedAt),
      flapping: alert.flapping,
      acknowledged: alert.acknowledged === null ? null : { by: alert.acknowledged.by, at: new Date(alert.acknowledged.at), comment: alert.acknowledged.comment },
      silencedBy: alert.status === 'resolved' ? null : activeSilence(silences, alert, now)?.id ?? null,
    }));
  return { alerts, silences };
}

/** The text of `alerts list`. */
export function renderList(listed: ReturnType<typeof listState>, now: Date, header: string): string {
  const lines = [header, ''];
  if (listed.alerts.length === 0) {
    lines.push('No alerts: nothing firing, pending, unknown or recently resolved.');
  } else {
    const rows = listed.alerts.map((alert) => {
      const since = alert.status === 'resolved' && alert.resolvedAt !== null
        ? ago(alert.resolvedAt.getTime(), now)
        : ago((alert.firingSince ?? alert.firstSeen).getTime(), now);
      const notes = [
        alert.acknowledged === null ? undefined : `acknowledged by ${alert.acknowledged.by}${alert.acknowledged.comment === '' ? '' : `: ${alert.acknowledged.comment}`}`,
        alert.silencedBy === null ? undefined : `silenced by ${alert.silencedBy}`,
        alert.flapping ? 'flapping' : undefined,
      ].filter((note) => note !== undefined);
      return [alert.id, alert.status, alert.severity, `${alert.cluster}/${alert.node}`, alert.checkId, alert.subject, since, notes.join('; ')];
    });
    lines.push(renderTextTable(
      [
        { title: 'ID', align: 'left', maxWidth: 8 },
        { title: 'STATUS', align: 'left', maxWidth: 8 },
        { title: 'SEVERITY', align: 'left', maxWidth: 8 },
        { title: 'NODE', align: 'left', maxWidth: 32 },
        { title: 'CHECK', align: 'left', maxWidth: 24 },
        { title: 'SUBJECT', align: 'left', maxWidth: 40 },
        { title: 'SINCE', align: 'left', maxWidth: 14 },
        { title: 'NOTE', align: 'left', maxWidth: 80 },
      ],
      rows,
    ));
  }
  lines.push('');
  if (listed.silences.length === 0) {
    lines.push('No active silences.');
  } else {
    lines.push('Silences:');
    lines.push(renderTextTable(
      [
        { title: 'ID', align: 'left', maxWidth: 16 },
        { title: 'MATCHERS', align: 'left', maxWidth: 60 },
        { title: 'EXPIRES', align: 'left', maxWidth: 40 },
        { title: 'AUTHOR', align: 'left', maxWidth: 20 },
        { title: 'COMMENT', align: 'left', maxWidth: 60 },
      ],
      listed.silences.map((silence) => [
        silence.id,
        silenceMatchers(silence),
        `${new Date(silence.endsAt).toISOString()} (in ${formatDuration(Math.round((silence.endsAt - now.getTime()) / 1000))})`,
        silence.author,
        silence.comment,
      ]),
    ));
  }
  return `${lines.join('\n')}\n`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Queues the command and waits for a watcher to take it; the report line. */
async function submit(stateDir: string, command: AlertCommand, what: string, waitMs: number): Promise<CommandOutput> {
  let id: string;
  try {
    id = await queueCommand(stateDir, command);
  } catch (error) {
    return { stdout: '', stderr: `pgwarden: cannot queue the command in ${commandsDir(stateDir)}: ${messageOf(error)}\n  hint: run it as the user the watcher runs as (e.g. sudo -u pgwarden), with the same --config\n`, exitCode: 1 };
  }
  const file = commandPath(stateDir, id);
  const deadline = Date.now() + waitMs;
  while (waitMs > 0 && Date.now() < deadline && (await exists(file))) await new Promise((resolve) => setTimeout(resolve, pollMs));
  if (await exists(file)) {
    const seconds = Math.round(waitMs / 1000);
    const reason = waitMs === 0 ? 'not waiting for a watcher' : `no watcher took it within ${seconds} s`;
    return { stdout: `${what}: queued (${id}): ${reason}; it applies when the watcher runs\n`, stderr: '', exitCode: 0 };
  }
  if (await exists(join(rejectedDir(stateDir), `${id}.json`))) {
    return { stdout: '', stderr: `pgwarden: ${what}: the watcher rejected command ${id}; see its log and ${rejectedDir(stateDir)}\n`, exitCode: 1 };
  }
  return { stdout: `${what}: applied by the watcher\n`, stderr: '', exitCode: 0 };
}

async function readState(stateDir: string): Promise<{ state: EngineState; savedAt: Date | null }> {
  const saved = await loadWatchState(stateDir);
  const savedAt = await stat(join(stateDir, stateFileName)).then((info) => info.mtime, () => null);
  return { state: saved.engine, savedAt };
}

/** Whether the pattern names a known check (a glob must match one). */
function knownCheck(pattern: string): boolean {
  return catalogue.some((check) => globMatch(pattern, check.id));
}

/** Runs one of list, silence, unsilence, ack, unack. */
export async function alertsManage(config: Config, command: ManageCommand, args: readonly string[], options: AlertsManageOptions): Promise<CommandOutput> {
  const { stateDir } = config.alerting;
  const now = options.now ?? new Date();
  const env = options.env ?? process.env;
  const waitMs = options.waitMs ?? defaultWaitMs;
  let loaded: { state: EngineState; savedAt: Date | null };
  try {
    loaded = await readState(stateDir);
  } catch (error) {
    return { stdout: '', stderr: `pgwarden: cannot read the watcher state in ${stateDir}: ${messageOf(error)}\n`, exitCode: 1 };
  }
  const { state } = loaded;
  switch (command) {
    case 'list': {
      const listed = listState(state, now);
      let queued = 0;
      try {
        queued = (await readdir(commandsDir(stateDir))).filter((name) => name.endsWith('.json') && !name.startsWith('.')).length;
      } catch {
        queued = 0;
      }
      if (options.json) {
        const out = { stateFile: join(stateDir, stateFileName), savedAt: loaded.savedAt, queuedCommands: queued, alerts: listed.alerts, silences: listed.silences.map((silence) => ({ ...silence, startsAt: new Date(silence.startsAt), endsAt: new Date(silence.endsAt) })) };
        return { stdout: `${JSON.stringify(toJsonValue(out), null, 2)}\n`, stderr: '', exitCode: 0 };
      }
      const header = loaded.savedAt === null
        ? `No watcher state in ${stateDir} yet: start pgwarden --watch with this config.`
        : `Watcher state ${join(stateDir, stateFileName)}, saved ${ago(loaded.savedAt.getTime(), now)}${queued > 0 ? `; ${queued} command(s) waiting for the watcher` : ''}.`;
      return { stdout: renderList(listed, now, header), stderr: '', exitCode: 0 };
    }
    case 'silence': {
      if (args.length > 0) return usage(`alerts silence takes no arguments (found "${args.join(' ')}"); give matchers as --check, --cluster, --node, --subject`);
      const matchers = { check: options.check, cluster: options.cluster, node: options.node, subject: options.subject };
      if (Object.values(matchers).every((value) => value === undefined || value === '')) {
        return usage('alerts silence needs at least one matcher: --check ID, --cluster NAME, --node NAME or --subject GLOB (a silence of everything is refused)');
      }
      if (options.check !== undefined && !knownCheck(options.check)) {
        return usage(`alerts silence: unknown check "${options.check}"; known: ${catalogue.map((check) => check.id).join(', ')}`);
      }
      if (options.for === undefined) return usage('alerts silence needs --for DURATION, e.g. --for 30m, 2h or 1d');
      const durationMs = parseDuration(options.for);
      if (durationMs === undefined) return usage(`alerts silence: --for "${options.for}" is not a duration; write it as 30m, 2h, 1d or 1h30m`);
      if (durationMs > maxSilenceMs) return usage(`alerts silence: --for ${options.for} is longer than 90 days; fix the alert or its thresholds instead`);
      const silence: Silence = {
        id: `s-${randomBytes(4).toString('hex')}`,
        ...(options.cluster === undefined || options.cluster === '' ? {} : { cluster: options.cluster }),
        ...(options.node === undefined || options.node === '' ? {} : { node: options.node }),
        ...(options.check === undefined || options.check === '' ? {} : { checkId: options.check }),
        ...(options.subject === undefined || options.subject === '' ? {} : { subject: options.subject }),
        startsAt: now.getTime(),
        endsAt: now.getTime() + durationMs,
        author: commandAuthor(env),
        comment: options.comment ?? '',
      };
      const covered = Object.values(state.alerts).filter((alert) => alert.status !== 'resolved' && activeSilence([silence], alert, now) !== undefined).length;
      const what = `silence ${silence.id} (${silenceMatchers(silence)}) until ${new Date(silence.endsAt).toISOString()}, covering ${covered} current alert${covered === 1 ? '' : 's'}`;
      return submit(stateDir, { kind: 'silence', silence }, what, waitMs);
    }
    case 'unsilence': {
      const [id, ...extra] = args;
      if (id === undefined || extra.length > 0) return usage('usage: pgwarden alerts unsilence SILENCE_ID (see pgwarden alerts list)');
      if (!state.silences.some((silence) => silence.id === id && silence.endsAt > now.getTime())) {
        const known = state.silences.filter((silence) => silence.endsAt > now.getTime()).map((silence) => `  ${silence.id}  ${silenceMatchers(silence)}\n`).join('');
        return { stdout: '', stderr: `pgwarden: no active silence "${id}"; active silences:\n${known === '' ? '  (none)\n' : known}`, exitCode: 2 };
      }
      return submit(stateDir, { kind: 'unsilence', id }, `unsilence ${id}`, waitMs);
    }
    case 'ack':
    case 'unack': {
      const [query, ...extra] = args;
      if (query === undefined || extra.length > 0) return usage(`usage: pgwarden alerts ${command} ID|PREFIX${command === 'ack' ? ' [--comment TEXT]' : ''} (IDs and names from pgwarden alerts list; quote names with spaces)`);
      const candidates = Object.values(state.alerts).filter((alert) =>
        command === 'ack' ? (alert.status === 'firing' || alert.status === 'unknown') && alert.acknowledged === null : alert.acknowledged !== null,
      ).sort((a, b) => (a.key < b.key ? -1 : 1));
      const match = findAlert(candidates, query);
      const adjective = command === 'ack' ? 'unacknowledged firing or unknown' : 'acknowledged';
      if (match.kind === 'none') return { stdout: '', stderr: `pgwarden: no ${adjective} alert matches "${query}"; candidates:\n${listCandidates(match.candidates)}`, exitCode: 2 };
      if (match.kind === 'ambiguous') return { stdout: '', stderr: `pgwarden: "${query}" matches ${match.candidates.length} alerts; give more of the id or name:\n${listCandidates(match.candidates)}`, exitCode: 2 };
      const { alert } = match;
      const what = `${command === 'ack' ? 'acknowledge' : 'unacknowledge'} ${alertId(alert.key)} ${alertLabel(alert)}`;
      const queued: AlertCommand = command === 'ack'
        ? { kind: 'acknowledge', key: alert.key, by: commandAuthor(env), comment: options.comment ?? '' }
        : { kind: 'unacknowledge', key: alert.key };
      return submit(stateDir, queued, what, waitMs);
    }
  }
}
