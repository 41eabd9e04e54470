/** Per-channel token buckets: N notices per window, refilled continuously. */
import type { ChannelState, RateLimit } from './types.js';

/** A full bucket, for a channel seen for the first time. */
export function freshChannel(limit: RateLimit | undefined, now: number): ChannelState {
  return { tokens: limit?.limit ?? 0, updatedAt: now, suppressed: 0 };
}

/** The bucket refilled up to `now`. */
export function refill(channel: ChannelState, limit: RateLimit, now: number): ChannelState {
  const elapsed = Math.max(0, now - channel.updatedAt);
  const tokens = Math.min(limit.limit, channel.tokens + (elapsed * limit.limit) / limit.windowMs);
  return { ...channel, tokens, updatedAt: now };
}

/** Takes one token if there is one; `allowed` false means the notice must be held and counted. */
export function take(channel: ChannelState, limit: RateLimit | undefined, now: number): { channel: ChannelState; allowed: boolean } {
  if (limit === undefined) return { channel, allowed: true };
  const filled = refill(channel, limit, now);
  // A small epsilon: refills by division must not leave 0.9999999 tokens.
  if (filled.tokens + 1e-9 < 1) return { channel: filled, allowed: false };
  return { channel: { ...filled, tokens: Math.max(0, filled.tokens - 1) }, allowed: true };
}
