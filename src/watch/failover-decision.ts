/**
 * When `pgwarden --watch` declares a cluster's primary lost (issue 6 item 5): a pure state machine
 * fed once per probe round with what the watcher saw of the primary and of every standby, and a
 * clock. It never acts; the automatic-failover loop (auto-failover.ts) acts on its verdict.
 *
 * The primary is lost only when, at the same round:
 * 1. the watcher has not reached it for at least lostAfterMs (every probe since failed), and
 * 2. at least one standby answers the watcher, and
 * 3. no standby that answers still has a WAL stream (pg_stat_wal_receiver not streaming), on this
 *    round and on the round before (one reading of a receiver between two retries is not enough).
 * A watcher cut off on its own sees the primary unreachable while the standbys still stream from
 * it: that is "suspect", never "lost". A reachable standby that accepts writes (someone promoted
 * it) also blocks the verdict: there is a primary already.
 *
 * After an automatic failover (done, failed or refused) the cluster is held off: a second loss is
 * still reported as "lost", with the hold-off, and the loop does not act on it until a human
 * acknowledges the failover alert or the hold-off expires (holdOff / releaseHoldOff).
 */
import { lsnBytes } from '../cluster/roles.js';

/** What the watcher saw of one standby on this round. */
export interface StandbyObservation {
  readonly name: string;
  /** Whether the watcher's probe answered. */
  readonly reachable: boolean;
  /** false: it answered out of recovery (it accepts writes); undefined: not known. */
  readonly inRecovery?: boolean | undefined;
  /** Whether its WAL receiver streams now. */
  readonly streaming: boolean;
  readonly timeline: number | null;
  /** The WAL it received (null when it never streamed or did not answer). */
  readonly receivedLsn: string | null;
}

/** One probe round of a cluster. */
export interface DecisionInput {
  /** Milliseconds since the epoch (a controllable clock in tests). */
  readonly now: number;
  /** The node the watcher knows as the primary. */
  readonly primary: string;
  /** Whether the watcher's own probe of the primary answered, as a primary, on this round. */
  readonly primaryReachable: boolean;
  /** The primary's flush position on this round (null when it did not answer). */
  readonly primaryLastLsn: string | null;
  readonly standbys: readonly StandbyObservation[];
}

export interface DecisionConfig {
  readonly lostAfterMs: number;
  readonly maxLagBytes: number;
}

/** No second automatic failover before `until` unless a human releases it. */
export interface HoldOff {
  readonly since: number;
  readonly until: number;
  readonly reason: string;
}

export interface DecisionState {
  /** The primary this state is about; another name starts afresh. */
  readonly primary: string | null;
  /** The last round the primary answered. */
  readonly lastReachedAt: number | null;
  /** The first round of the current run of failed probes. */
  readonly unreachableSince: number | null;
  /** The primary's last position the watcher saw (kept across the rounds it does not answer). */
  readonly primaryLastLsn: string | null;
  /** Rounds in a row, while the primary is unreachable, on which no reachable standby streamed. */
  readonly streamsLostRounds: number;
  /** The first of those rounds. */
  readonly streamsLostSince: number | null;
  readonly holdOff: HoldOff | null;
}

/** Why the verdict is what it is, for logs that say each change once. */
export type VerdictCode =
  | 'reachable'
  | 'waiting'
  | 'cut-off'
  | 'no-standby'
  | 'other-primary'
  | 'confirming'
  | 'no-candidate'
  | 'declared';

export type Verdict =
  | { readonly state: 'healthy'; readonly code: 'reachable'; readonly reasons: readonly string[] }
  | { readonly state: 'suspect'; readonly code: VerdictCode; readonly since: number; readonly reasons: readonly string[] }
  | {
      readonly state: 'lost';
      readonly code: 'declared' | 'no-candidate';
      readonly since: number;
      readonly reasons: readonly string[];
      readonly lastPrimaryLsn: string | null;
      /** Standbys that answer, on the newest timeline among them, within maxLagBytes of lastPrimaryLsn. */
      readonly eligible: readonly string[];
      /** Set while a previous failover holds the cluster off: report, do not act. */
      readonly heldOff: HoldOff | null;
    };

/** The state of a cluster the watcher has not probed yet. */
export function initialDecision(): DecisionState {
  return { primary: null, lastReachedAt: null, unreachableSince: null, primaryLastLsn: null, streamsLostRounds: 0, streamsLostSince: null, holdOff: null };
}

/** Rounds in a row on which every reachable standby must have lost its stream. */
export const streamsLostRoundsNeeded = 2;

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function names(list: readonly string[]): string {
  return list.length === 0 ? '(none)' : list.join(', ');
}

/** How far behind `lsn` is `received`, in bytes (0 when ahead); null when either is unknown. */
function lagBytes(lsn: string | null, received: string | null): number | null {
  if (lsn === null || received === null) return null;
  return Math.max(0, lsnBytes(lsn) - lsnBytes(received));
}

/** The standbys automatic failover could promote: reachable, in recovery, newest timeline, within the lag limit. */
export function eligibleStandbys(standbys: readonly StandbyObservation[], lastPrimaryLsn: string | null, maxLagBytes: number): { eligible: string[]; refused: string[] } {
  const reachable = standbys.filter((standby) => standby.reachable && standby.inRecovery !== false);
  const newest = Math.max(...reachable.map((standby) => standby.timeline ?? -1));
  const eligible: string[] = [];
  const refused: string[] = [];
  for (const standby of reachable) {
    const lag = lagBytes(lastPrimaryLsn, standby.receivedLsn);
    if (standby.receivedLsn === null) refused.push(`${standby.name} never received WAL`);
    else if (standby.timeline === null || standby.timeline < newest) refused.push(`${standby.name} is on timeline ${standby.timeline ?? '?'}, older than ${newest}`);
    else if (lag !== null && lag > maxLagBytes) refused.push(`${standby.name} lags ${lag} bytes behind the primary's last known position (limit ${maxLagBytes})`);
    else eligible.push(standby.name);
  }
  return { eligible, refused };
}

/** One round: the next state and the verdict. */
export function decide(previous: DecisionState, input: DecisionInput, config: DecisionConfig): { state: DecisionState; verdict: Verdict } {
  const now = input.now;
  // A human switchover (or our own failover) changed the primary: nothing carries over but the hold-off.
  const base: DecisionState = previous.primary === input.primary ? previous : { ...initialDecision(), primary: input.primary, holdOff: previous.holdOff };
  const holdOff = base.holdOff !== null && now >= base.holdOff.until ? null : base.holdOff;

  if (input.primaryReachable) {
    const state: DecisionState = {
      ...base, holdOff, lastReachedAt: now, unreachableSince: null, streamsLostRounds: 0, streamsLostSince: null,
      primaryLastLsn: input.primaryLastLsn ?? base.primaryLastLsn,
    };
    return { state, verdict: { state: 'healthy', code: 'reachable', reasons: [`${input.primary} answers`] } };
  }

  const since = base.unreachableSince ?? now;
  const down = now - since;
  const reachable = input.standbys.filter((standby) => standby.reachable);
  const streaming = reachable.filter((standby) => standby.streaming).map((standby) => standby.name);
  const writable = reachable.filter((standby) => standby.inRecovery === false).map((standby) => standby.name);
  const allLost = reachable.length > 0 && streaming.length === 0 && writable.length === 0;
  const streamsLostRounds = allLost ? base.streamsLostRounds + 1 : 0;
  const streamsLostSince = allLost ? (base.streamsLostSince ?? now) : null;
  const state: DecisionState = { ...base, holdOff, unreachableSince: since, streamsLostRounds, streamsLostSince };
  const unreachable = `the watcher has not reached ${input.primary} for ${seconds(down)} (since ${new Date(since).toISOString()}; lostAfter ${seconds(config.lostAfterMs)})`;
  const suspect = (code: VerdictCode, reason: string): { state: DecisionState; verdict: Verdict } => ({ state, verdict: { state: 'suspect', code, since, reasons: [unreachable, reason] } });

  if (writable.length > 0) return suspect('other-primary', `${names(writable)} accepts writes already: no failover (a second primary is a split brain, not a lost primary)`);
  if (reachable.length === 0) return suspect('no-standby', `no standby answers the watcher either: the watcher may be the one cut off; no failover`);
  if (streaming.length > 0) {
    return suspect(
      down >= config.lostAfterMs ? 'cut-off' : 'waiting',
      `${names(streaming)} still stream${streaming.length === 1 ? 's' : ''} WAL from it: the primary is up for ${streaming.length === 1 ? 'it' : 'them'}, only the watcher is cut off; no failover`,
    );
  }
  const lostStreams = `every standby that answers (${names(reachable.map((standby) => standby.name))}) lost its WAL stream (since ${new Date(streamsLostSince ?? now).toISOString()})`;
  if (down < config.lostAfterMs) return suspect('waiting', lostStreams);
  if (streamsLostRounds < streamsLostRoundsNeeded) return suspect('confirming', `${lostStreams}; confirming on the next round`);

  const { eligible, refused } = eligibleStandbys(input.standbys, state.primaryLastLsn, config.maxLagBytes);
  const reasons = [unreachable, lostStreams, ...(eligible.length === 0 ? [`no standby can be promoted: ${refused.join('; ')}`] : [`candidates: ${names(eligible)}`])];
  if (holdOff !== null) reasons.push(`held off since ${new Date(holdOff.since).toISOString()} until ${new Date(holdOff.until).toISOString()} (${holdOff.reason}); acknowledge the failover alert to allow another automatic failover`);
  return {
    state,
    verdict: { state: 'lost', code: eligible.length === 0 ? 'no-candidate' : 'declared', since, reasons, lastPrimaryLsn: state.primaryLastLsn, eligible, heldOff: holdOff },
  };
}

/** Holds the cluster off automatic failover for durationMs from now. */
export function holdOff(state: DecisionState, now: number, durationMs: number, reason: string): DecisionState {
  return { ...state, holdOff: { since: now, until: now + durationMs, reason } };
}

/** Ends the hold-off (a human acknowledged the failover alert). */
export function releaseHoldOff(state: DecisionState): DecisionState {
  return state.holdOff === null ? state : { ...state, holdOff: null };
}
