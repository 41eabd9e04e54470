/**
 * Operator commands on the alert engine's state (silence, unsilence, acknowledge, unacknowledge),
 * as plain data so that the CLI and the console can queue them for a running watcher, which applies
 * them at the start of its next engine step. Pure and idempotent: a command applied twice (a watcher
 * that crashed after applying but before removing the queued file) leaves the same state as once.
 */
import { acknowledge, silence, unacknowledge, unsilence } from './engine.js';
import type { EngineState, Silence } from './types.js';

/** One operator command. */
export type AlertCommand =
  | { readonly kind: 'silence'; readonly silence: Silence }
  | { readonly kind: 'unsilence'; readonly id: string }
  | { readonly kind: 'acknowledge'; readonly key: string; readonly by: string; readonly comment: string }
  | { readonly kind: 'unacknowledge'; readonly key: string };

/** The kinds of command, for validation of queued files. */
export const alertCommandKinds: readonly AlertCommand['kind'][] = ['silence', 'unsilence', 'acknowledge', 'unacknowledge'];

/**
 * Applies one command. A silence replaces the silence with the same id (an expired one is refused);
 * an acknowledgement of an alert that is not firing or unknown is a no-op, and acknowledging again
 * with the same author and comment keeps the first acknowledgement's time.
 */
export function applyCommand(state: EngineState, command: AlertCommand, now: Date): EngineState {
  switch (command.kind) {
    case 'silence':
      return silence(state, command.silence, now);
    case 'unsilence':
      return unsilence(state, command.id);
    case 'acknowledge': {
      const existing = state.alerts[command.key]?.acknowledged;
      if (existing != null && existing.by === command.by && existing.comment === command.comment) return state;
      return acknowledge(state, command.key, command.by, command.comment, now);
    }
    case 'unacknowledge':
      return unacknowledge(state, command.key);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: Record<string, unknown>, key: string): string {
  const found = value[key];
  if (typeof found !== 'string') throw new Error(`"${key}" must be a string`);
  return found;
}

function optionalText(value: Record<string, unknown>, key: string): string | undefined {
  const found = value[key];
  if (found === undefined) return undefined;
  if (typeof found !== 'string') throw new Error(`"${key}" must be a string when given`);
  return found;
}

function number(value: Record<string, unknown>, key: string): number {
  const found = value[key];
  if (typeof found !== 'number' || !Number.isFinite(found)) throw new Error(`"${key}" must be a number (epoch milliseconds)`);
  return found;
}

function parseSilence(value: unknown): Silence {
  if (!isRecord(value)) throw new Error('"silence" must be an object');
  const cluster = optionalText(value, 'cluster');
  const node = optionalText(value, 'node');
  const checkId = optionalText(value, 'checkId');
  const subject = optionalText(value, 'subject');
  if (cluster === undefined && node === undefined && checkId === undefined && subject === undefined) {
    throw new Error('a silence needs at least one matcher (cluster, node, checkId or subject)');
  }
  return {
    id: text(value, 'id'),
    ...(cluster === undefined ? {} : { cluster }),
    ...(node === undefined ? {} : { node }),
    ...(checkId === undefined ? {} : { checkId }),
    ...(subject === undefined ? {} : { subject }),
    startsAt: number(value, 'startsAt'),
    endsAt: number(value, 'endsAt'),
    author: text(value, 'author'),
    comment: text(value, 'comment'),
  };
}

/** A command read back from JSON; throws with what is wrong when the value is not a command. */
export function parseCommand(value: unknown): AlertCommand {
  if (!isRecord(value)) throw new Error('a command must be a JSON object');
  switch (value.kind) {
    case 'silence':
      return { kind: 'silence', silence: parseSilence(value.silence) };
    case 'unsilence':
      return { kind: 'unsilence', id: text(value, 'id') };
    case 'acknowledge':
      return { kind: 'acknowledge', key: text(value, 'key'), by: text(value, 'by'), comment: text(value, 'comment') };
    case 'unacknowledge':
      return { kind: 'unacknowledge', key: text(value, 'key') };
    default:
      throw new Error(`unknown command kind ${JSON.stringify(value.kind)}: expected one of ${alertCommandKinds.join(', ')}`);
  }
}
