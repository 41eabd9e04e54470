/**
 * The alert engine's data. Everything here is plain data: the engine state holds times as epoch
 * milliseconds so that a watcher can persist it as JSON and resume with the same notice ids;
 * the inputs and outputs (events, notices) use Date values.
 */

/** Severity of a finding, as the checks report it. */
export type FindingSeverity = 'ok' | 'info' | 'warning' | 'critical' | 'unknown';

/** Severity of an alert (a finding that is not ok). */
export type AlertSeverity = Exclude<FindingSeverity, 'ok'>;

/**
 * What the engine needs from a check finding; structurally compatible with src/checks' Finding
 * so the watcher can pass findings through unchanged.
 */
export interface FindingInput {
  readonly checkId: string;
  readonly severity: FindingSeverity;
  readonly subject: string;
  readonly value: number | null;
  readonly threshold: number | null;
  readonly unit: string;
  readonly message: string;
  /**
   * The offending sessions, lock tree, lag figures… An object rather than a record so that the
   * checks' FindingContext interface (no index signature) is accepted as it is.
   */
  readonly context: object;
  readonly runbook: string;
}

/** The findings of one evaluation of one node. */
export interface Evaluation {
  readonly cluster: string;
  readonly node: string;
  /**
   * The checks that ran in this evaluation. An alert of one of these checks whose subject is not
   * among the findings is resolved (the subject went away); alerts of checks that did not run
   * (slower cadence) are left alone. Defaults to the checks of the findings.
   */
  readonly checks?: readonly string[];
  readonly findings: readonly FindingInput[];
}

/** inactive is the absence of a record. */
export type AlertStatus = 'pending' | 'firing' | 'unknown' | 'resolved';

export interface Acknowledgement {
  readonly by: string;
  readonly at: number;
  readonly comment: string;
}

/** One alert: cluster + node + check + subject. */
export interface AlertRecord {
  readonly key: string;
  readonly cluster: string;
  readonly node: string;
  readonly checkId: string;
  readonly subject: string;
  readonly status: AlertStatus;
  /** The latest severity that was not ok. */
  readonly severity: AlertSeverity;
  /** Consecutive failing (or unknown) evaluations of the current pending episode. */
  readonly streak: number;
  /** Consecutive unknown evaluations while firing. */
  readonly unknownStreak: number;
  /** First failing evaluation of the current episode. */
  readonly firstSeen: number;
  readonly firingSince: number | null;
  /** When the alert became critical (for escalation to a second team); null when not critical. */
  readonly criticalSince: number | null;
  readonly resolvedAt: number | null;
  readonly lastEvaluated: number;
  readonly finding: FindingInput;
  /** Times of the recent state changes (into firing, unknown or resolved), for flapping. */
  readonly changes: readonly number[];
  readonly flapping: boolean;
  readonly acknowledged: Acknowledgement | null;
}

export type AlertEventKind = 'firing' | 'escalated' | 'de-escalated' | 'resolved' | 'flapping' | 'unknown';

/** A state change of one alert, for NDJSON output and the console. */
export interface AlertEvent {
  readonly kind: AlertEventKind;
  readonly at: Date;
  readonly key: string;
  readonly cluster: string;
  readonly node: string;
  readonly checkId: string;
  readonly subject: string;
  readonly severity: AlertSeverity;
  readonly previousSeverity: AlertSeverity | null;
  readonly firstSeen: Date;
  readonly finding: FindingInput;
}

/** Options of the state machine. */
export interface StateOptions {
  /** Failing evaluations in a row before an alert fires (DESIGN §5: two). */
  readonly failuresToFire: number;
  /** State changes within flapWindowMs that make an alert flapping. */
  readonly flapChanges: number;
  readonly flapWindowMs: number;
  /** A flapping alert is stable again after this long without a state change. */
  readonly flapStableMs: number;
}

/** A silence: every matcher given must match (subject is a glob; the others are globs too). */
export interface Silence {
  readonly id: string;
  readonly cluster?: string;
  readonly node?: string;
  readonly checkId?: string;
  readonly subject?: string;
  readonly startsAt: number;
  readonly endsAt: number;
  readonly author: string;
  readonly comment: string;
}

export interface GroupTiming {
  readonly groupWaitMs: number;
  readonly groupIntervalMs: number;
  readonly repeatIntervalMs: number;
}

export interface QuietHours {
  /** "22:00" */
  readonly from: string;
  /** "07:00"; a range that ends before it starts wraps midnight. */
  readonly to: string;
  /** IANA zone, e.g. "Europe/Paris". */
  readonly timeZone: string;
  /** Criticals are sent during quiet hours. */
  readonly criticalOverrides: boolean;
}

export type Delivery = { readonly mode: 'immediate' } | { readonly mode: 'digest'; readonly everyMs: number };

export interface Team {
  readonly id: string;
  readonly members: readonly string[];
  readonly channels: readonly string[];
  readonly minSeverity: AlertSeverity;
  /** Globs over check ids; empty or absent means all. */
  readonly checks?: readonly string[];
  /** Globs over cluster names; empty or absent means all. */
  readonly clusters?: readonly string[];
  readonly quietHours?: QuietHours;
  readonly delivery: Delivery;
  readonly timing?: Partial<GroupTiming>;
  readonly sendResolved?: boolean;
  /** An unacknowledged critical of this team goes to another team after a delay. */
  readonly escalation?: { readonly toTeam: string; readonly afterMs: number };
}

export interface RateLimit {
  /** Notices allowed per window. */
  readonly limit: number;
  readonly windowMs: number;
}

export interface EngineConfig {
  readonly state: StateOptions;
  readonly timing: GroupTiming;
  readonly teams: readonly Team[];
  /** Per channel id. Channels without an entry are not limited. */
  readonly rateLimits: Readonly<Record<string, RateLimit>>;
  /** Minimum time between two notices about the same alert (0: off). */
  readonly cooldownMs: number;
}

/** What one group last told its recipients about one alert. */
export interface SentAlert {
  readonly key: string;
  /** 'firing' | 'unknown' | 'flapping'; resolved alerts leave the map. */
  readonly status: 'firing' | 'unknown' | 'flapping';
  readonly severity: AlertSeverity;
  readonly at: number;
  readonly alert: NoticeAlertData;
}

/** A notification group: one team, one channel, one cluster, one check. */
export interface GroupState {
  readonly key: string;
  readonly team: string;
  readonly channel: string;
  readonly cluster: string;
  readonly checkId: string;
  /** Stable for one episode of the group (first alert until everything resolved). */
  readonly threadId: string | null;
  readonly seq: number;
  /** When the group first had something to say (group wait counts from here). */
  readonly activeSince: number | null;
  readonly lastNoticeAt: number | null;
  readonly sent: Readonly<Record<string, SentAlert>>;
  /** Fingerprint of the last notice held back by the rate limit, so it is counted once. */
  readonly heldFingerprint: string | null;
  /** Fingerprint of the last set of changes held back by cooldown, so it is counted once. */
  readonly cooldownFingerprint: string | null;
  /** Notices of this group held back by cooldown and not yet reported. */
  readonly suppressed: number;
  /** When each alert was last part of a notice of this group (for the cooldown). */
  readonly notifiedAt: Readonly<Record<string, number>>;
}

export interface ChannelState {
  readonly tokens: number;
  readonly updatedAt: number;
  /** Notices suppressed by the rate limit, reported by the next notice on the channel. */
  readonly suppressed: number;
}

export interface DigestState {
  readonly key: string;
  /** Start of the last period a digest was sent for. */
  readonly lastPeriod: number | null;
  readonly entries: readonly NoticeAlertData[];
  readonly heldPeriod: number | null;
}

export interface EngineState {
  readonly alerts: Readonly<Record<string, AlertRecord>>;
  readonly silences: readonly Silence[];
  readonly groups: Readonly<Record<string, GroupState>>;
  readonly channels: Readonly<Record<string, ChannelState>>;
  readonly digests: Readonly<Record<string, DigestState>>;
}

/** One alert as a notice presents it (JSON-friendly: times in ms). */
export interface NoticeAlertData {
  readonly key: string;
  readonly cluster: string;
  readonly node: string;
  readonly checkId: string;
  readonly subject: string;
  readonly status: 'firing' | 'unknown' | 'flapping' | 'resolved';
  readonly severity: AlertSeverity;
  readonly value: number | null;
  readonly threshold: number | null;
  readonly unit: string;
  readonly message: string;
  readonly context: object;
  readonly runbook: string;
  readonly firstSeen: number;
  readonly acknowledgedBy: string | null;
  /** The team that did not acknowledge it in time, when this is an escalation. */
  readonly escalatedFrom: string | null;
}

export type NoticeKind = 'firing' | 'update' | 'resolved' | 'digest' | 'test';

/** One message to send on one channel: written to the outbox, then sent. */
export interface Notice {
  /** Deterministic: thread id + sequence, so a restarted watcher never sends twice. */
  readonly id: string;
  readonly channel: string;
  readonly team: string;
  readonly recipients: readonly string[];
  readonly threadId: string;
  readonly kind: NoticeKind;
  readonly severity: AlertSeverity | 'ok';
  readonly subject: string;
  readonly body: readonly string[];
  readonly alerts: readonly NoticeAlertData[];
  readonly suppressedCount: number;
  readonly createdAt: Date;
}
