/**
 * The alert engine: one pure step per evaluation (or clock tick). State in, state out, with the
 * alert events of the step and the notices to write to the outbox. No I/O and no timers: the
 * caller passes `now`, so a restarted watcher holding the same state produces the same notice ids
 * and sends nothing twice.
 */
import { decideGroup, defaultTiming, emptyGroup, groupIsIdle, groupKey, hashText, noticeBody, noticeSubject } from './grouping.js';
import { freshChannel, take } from './ratelimit.js';
import { quietFor, routeAlert } from './routing.js';
import { activeSilence, addSilence, expireSilences, inhibitedBy, removeSilence } from './silences.js';
import { acknowledgeAlert, applyEvaluations, defaultStateOptions, settleAlerts, severityRank, unacknowledgeAlert } from './state.js';
import type {
  AlertEvent,
  AlertRecord,
  AlertSeverity,
  ChannelState,
  DigestState,
  EngineConfig,
  EngineState,
  Evaluation,
  GroupState,
  NoticeAlertData,
  Notice,
  Silence,
  Team,
} from './types.js';

/** An engine with no alerts, silences or history. */
export function initialEngineState(): EngineState {
  return { alerts: {}, silences: [], groups: {}, channels: {}, digests: {} };
}

/** The DESIGN §5/§6 defaults around the given teams. */
export function defaultEngineConfig(teams: readonly Team[]): EngineConfig {
  return { state: defaultStateOptions, timing: defaultTiming, teams, rateLimits: {}, cooldownMs: 0 };
}

export interface StepResult {
  readonly state: EngineState;
  readonly events: readonly AlertEvent[];
  readonly notices: readonly Notice[];
}

/** Why an alert's notices are held (null: they are not). */
export function muteReason(state: EngineState, alert: AlertRecord, now: Date): string | null {
  const silence = activeSilence(state.silences, alert, now);
  if (silence !== undefined) return `silenced by ${silence.author}: ${silence.comment}`;
  return inhibitedBy(state.alerts, alert);
}

function isActive(alert: AlertRecord): boolean {
  return alert.flapping || alert.status === 'firing' || alert.status === 'unknown';
}

function noticeData(alert: AlertRecord, escalatedFrom: string | null): NoticeAlertData {
  const { finding } = alert;
  return {
    key: alert.key,
    cluster: alert.cluster,
    node: alert.node,
    checkId: alert.checkId,
    subject: alert.subject,
    status: alert.flapping ? 'flapping' : alert.status === 'unknown' ? 'unknown' : alert.status === 'resolved' ? 'resolved' : 'firing',
    severity: alert.severity,
    value: finding.value,
    threshold: finding.threshold,
    unit: finding.unit,
    message: alert.flapping ? `${finding.message} (flapping: notices held until stable)` : finding.message,
    context: finding.context,
    runbook: finding.runbook,
    firstSeen: alert.firstSeen,
    acknowledgedBy: alert.acknowledged?.by ?? null,
    escalatedFrom,
  };
}

interface Collected {
  current: NoticeAlertData[];
  muted: Set<string>;
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One step: apply the evaluations, let time pass, and produce the notices that are due. */
export function stepEngine(previous: EngineState, evaluations: readonly Evaluation[], config: EngineConfig, now: Date): StepResult {
  const at = now.getTime();
  const silences = expireSilences(previous.silences, now);
  const applied = applyEvaluations(previous.alerts, evaluations, config.state, now);
  const alerts = settleAlerts(applied.alerts, config.state, now);
  const state: EngineState = { ...previous, silences, alerts };
  const teams = new Map(config.teams.map((team) => [team.id, team]));

  const latest = new Map<string, NoticeAlertData>();
  const collected = new Map<string, Collected>();
  const groups: Record<string, GroupState> = { ...previous.groups };

  const ensureGroup = (team: Team, channel: string, alert: AlertRecord): Collected => {
    const key = groupKey(team.id, channel, alert.cluster, alert.checkId);
    groups[key] ??= emptyGroup(team.id, channel, alert.cluster, alert.checkId);
    let entry = collected.get(key);
    if (entry === undefined) {
      entry = { current: [], muted: new Set() };
      collected.set(key, entry);
    }
    return entry;
  };

  for (const alert of Object.values(alerts).sort((a, b) => compareKeys(a.key, b.key))) {
    latest.set(alert.key, noticeData(alert, null));
    if (!isActive(alert)) continue;
    const muted = muteReason(state, alert, now) !== null;
    const routes = new Map(routeAlert(config.teams, alert, now));
    // An alert a group has already announced stays with it until it resolves, so a drop below the
    // team's minimum severity reads as a de-escalation, not as a resolution.
    for (const group of Object.values(previous.groups)) {
      if (group.sent[alert.key] !== undefined && !routes.has(group.team)) routes.set(group.team, null);
    }
    for (const [teamId, escalatedFrom] of routes) {
      const team = teams.get(teamId);
      if (team === undefined) continue;
      const data = noticeData(alert, escalatedFrom);
      if (team.delivery.mode === 'digest') continue;
      for (const channel of team.channels) {
        const entry = ensureGroup(team, channel, alert);
        if (muted) entry.muted.add(alert.key);
        else entry.current.push(data);
      }
    }
  }

  const channels: Record<string, ChannelState> = { ...previous.channels };
  const notices: Notice[] = [];
  for (const key of Object.keys(groups).sort(compareKeys)) {
    const group = groups[key];
    if (group === undefined) continue;
    const team = teams.get(group.team);
    if (team === undefined) continue;
    const entry = collected.get(key) ?? { current: [], muted: new Set<string>() };
    const outcome = decideGroup(
      group,
      { current: entry.current, muted: entry.muted, latest },
      {
        timing: { ...config.timing, ...team.timing },
        cooldownMs: config.cooldownMs,
        sendResolved: team.sendResolved ?? true,
        quiet: (severity) => quietFor(team, severity, now),
      },
      now,
    );
    if (outcome.action !== 'send') {
      groups[key] = outcome.group;
    } else {
      const limit = config.rateLimits[group.channel];
      const channel = channels[group.channel] ?? freshChannel(limit, at);
      const taken = take(channel, limit, at);
      if (!taken.allowed) {
        // Held, not dropped: the group keeps its difference and sends it when a token is back.
        const counted = outcome.fingerprint !== group.heldFingerprint;
        channels[group.channel] = { ...taken.channel, suppressed: taken.channel.suppressed + (counted ? 1 : 0) };
        groups[key] = { ...group, activeSince: outcome.group.activeSince ?? group.activeSince, heldFingerprint: outcome.fingerprint };
      } else {
        const suppressedCount = taken.channel.suppressed + group.suppressed;
        channels[group.channel] = { ...taken.channel, suppressed: 0 };
        groups[key] = outcome.group;
        const { draft } = outcome;
        notices.push({
          id: `${draft.threadId}.${draft.seq}`,
          channel: group.channel,
          team: team.id,
          recipients: team.members,
          threadId: draft.threadId,
          kind: draft.kind,
          severity: draft.severity,
          subject: noticeSubject(draft.kind, draft.severity, group.cluster, group.checkId, draft.alerts.length),
          body: noticeBody(draft, suppressedCount),
          alerts: draft.alerts,
          suppressedCount,
          createdAt: now,
        });
      }
    }
  }
  // Idle groups and groups of teams that left the config are forgotten.
  const keptGroups = Object.fromEntries(
    Object.entries(groups).filter(([key, group]) => teams.has(group.team) && !(groupIsIdle(group) && !collected.has(key))),
  );

  const digests = stepDigests(previous.digests, applied.events, state, config, channels, notices, now);
  return { state: { alerts, silences, groups: keptGroups, channels, digests }, events: applied.events, notices };
}

function digestKey(team: string, channel: string): string {
  return JSON.stringify([team, channel]);
}

/**
 * Digest teams get one notice per period listing what changed (the state events of alerts routed
 * to them), sent on the first step of the next period, outside quiet hours.
 */
function stepDigests(
  previous: Readonly<Record<string, DigestState>>,
  events: readonly AlertEvent[],
  state: EngineState,
  config: EngineConfig,
  channels: Record<string, ChannelState>,
  notices: Notice[],
  now: Date,
): Record<string, DigestState> {
  const at = now.getTime();
  const digests: Record<string, DigestState> = { ...previous };
  const routed = new Map<string, NoticeAlertData[]>();
  for (const event of events) {
    const record = state.alerts[event.key];
    if (record === undefined || muteReason(state, record, now) !== null) continue;
    for (const [teamId, escalatedFrom] of routeAlert(config.teams, record, now)) {
      const list = routed.get(teamId) ?? [];
      const data = noticeData(record, escalatedFrom);
      list.push({ ...data, message: `${event.kind}: ${data.message}` });
      routed.set(teamId, list);
    }
  }
  for (const team of config.teams) {
    if (team.delivery.mode !== 'digest') continue;
    const everyMs = team.delivery.everyMs;
    const period = Math.floor(at / everyMs) * everyMs;
    for (const channel of team.channels) {
      const key = digestKey(team.id, channel);
      const digest = digests[key] ?? { key, lastPeriod: period, entries: [], heldPeriod: null };
      const entries = [...digest.entries, ...(routed.get(team.id) ?? [])];
      let next: DigestState = { ...digest, entries };
      const due = digest.lastPeriod !== null && period > digest.lastPeriod;
      if (due && entries.length === 0) {
        next = { ...next, lastPeriod: period };
      } else if (due && !quietFor(team, maxOf(entries), now)) {
        const limit = config.rateLimits[channel];
        const bucket = channels[channel] ?? freshChannel(limit, at);
        const taken = take(bucket, limit, at);
        if (!taken.allowed) {
          const counted = digest.heldPeriod !== period;
          channels[channel] = { ...taken.channel, suppressed: taken.channel.suppressed + (counted ? 1 : 0) };
          next = { ...next, heldPeriod: period };
        } else {
          const suppressedCount = taken.channel.suppressed;
          channels[channel] = { ...taken.channel, suppressed: 0 };
          const threadId = `digest-${hashText(key)}`;
          const severity = maxOf(entries);
          notices.push({
            id: `${threadId}.${period.toString(36)}`,
            channel,
            team: team.id,
            recipients: team.members,
            threadId,
            kind: 'digest',
            severity,
            subject: `[DIGEST] ${entries.length} alert change${entries.length === 1 ? '' : 's'} since ${new Date(digest.lastPeriod ?? period).toISOString()}`,
            body: noticeBody({ alerts: entries, repeat: false }, suppressedCount),
            alerts: entries,
            suppressedCount,
            createdAt: now,
          });
          next = { key, lastPeriod: period, entries: [], heldPeriod: null };
        }
      }
      digests[key] = next;
    }
  }
  return digests;
}

function maxOf(entries: readonly NoticeAlertData[]): AlertSeverity | 'ok' {
  let best: AlertSeverity | 'ok' = 'ok';
  for (const entry of entries) {
    if (entry.status !== 'resolved' && severityRank(entry.severity) > severityRank(best)) best = entry.severity;
  }
  return best;
}

/** Adds a silence to the engine state. */
export function silence(state: EngineState, added: Silence, now: Date): EngineState {
  return { ...state, silences: addSilence(state.silences, added, now) };
}

/** Removes a silence by id. */
export function unsilence(state: EngineState, id: string): EngineState {
  return { ...state, silences: removeSilence(state.silences, id) };
}

/** Acknowledges an alert by key. */
export function acknowledge(state: EngineState, key: string, by: string, comment: string, now: Date): EngineState {
  return { ...state, alerts: acknowledgeAlert(state.alerts, key, by, comment, now) };
}

/** Removes an acknowledgement. */
export function unacknowledge(state: EngineState, key: string): EngineState {
  return { ...state, alerts: unacknowledgeAlert(state.alerts, key) };
}

/** A test notice for `pgwarden alerts test`, one per team and channel, with a deterministic id. */
export function testNotices(teams: readonly Team[], now: Date): Notice[] {
  return teams.flatMap((team) =>
    team.channels.map((channel): Notice => {
      const threadId = `test-${hashText(digestKey(team.id, channel))}`;
      return {
        id: `${threadId}.${now.getTime().toString(36)}`,
        channel,
        team: team.id,
        recipients: team.members,
        threadId,
        kind: 'test',
        severity: 'info',
        subject: `[TEST] pgwarden notice for team ${team.id}`,
        body: [`This is a test notice from pgwarden to team ${team.id} on channel ${channel}.`],
        alerts: [],
        suppressedCount: 0,
        createdAt: now,
      };
    }),
  );
}
