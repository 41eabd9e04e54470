/**
 * Dialogs around an action: the plan (the exact SQL and commands, in order) before anything runs,
 * with a confirmation scaled to the danger; then its progress.
 */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { displayWidth, truncate } from '../format/text-table.js';
import { wrapText } from './DetailPane.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

/** The shape of an action plan this dialog needs (src/actions' Plan is accepted structurally). */
export interface PlanView {
  readonly title: string;
  readonly target: string;
  readonly danger: 'low' | 'medium' | 'high';
  readonly steps: readonly { readonly description: string; readonly sql?: string | undefined; readonly command?: string | undefined; readonly detail?: readonly string[] | undefined }[];
  /** What the user must type to confirm (a name, a count), or null for a y/n confirmation. */
  readonly confirmToken: string | null;
  /** Why the plan cannot run (pgwarden's own session, read-only…), or null. */
  readonly refused: string | null;
}

type Tone = 'ok' | 'warning' | 'critical' | 'muted' | 'accent' | 'header' | undefined;

interface DialogLine {
  readonly text: string;
  readonly tone: Tone;
  readonly bold?: boolean;
}

const dangerTone: Readonly<Record<PlanView['danger'], Tone>> = { low: 'ok', medium: 'warning', high: 'critical' };

/** Text wrapped with a prefix on its first line and the prefix's width of indentation after. */
function hanging(prefix: string, text: string, width: number, tone: Tone): DialogLine[] {
  const indent = ' '.repeat(displayWidth(prefix));
  return wrapText(text, Math.max(width - indent.length, 1)).map((line, index) => ({ text: (index === 0 ? prefix : indent) + line, tone }));
}

/** The steps of a plan, numbered: the exact SQL or command, then what it does. */
export function planStepLines(steps: PlanView['steps'], width: number): DialogLine[] {
  const lines: DialogLine[] = [];
  steps.forEach((step, index) => {
    const prefix = `${index + 1}. `;
    const exact = step.sql ?? step.command;
    const indent = ' '.repeat(prefix.length);
    if (exact === undefined) {
      lines.push(...hanging(prefix, step.description, width, undefined));
    } else {
      lines.push(...hanging(prefix, exact, width, 'accent'));
      lines.push(...hanging(indent, step.description, width, 'muted'));
    }
    // Verbatim lines (a command's own printed plan): indented as printed, never renumbered.
    for (const line of step.detail ?? []) {
      const own = /^\s*/.exec(line)?.[0] ?? '';
      lines.push(...hanging(indent + own, line.trimStart(), width, 'accent'));
    }
  });
  return lines;
}

/**
 * The prompt under a plan: a refused plan can only be closed; with a token to type, what has been
 * typed so far (in red as soon as it stops matching); otherwise y/n.
 */
export function confirmPrompt(plan: PlanView, typed: string): DialogLine[] {
  if (plan.refused !== null) return [{ text: `refused: ${plan.refused}`, tone: 'critical' }, { text: 'esc to close', tone: 'muted' }];
  if (plan.confirmToken !== null) {
    const token = plan.confirmToken;
    const matches = typed === token;
    return [
      { text: `type ${token} to confirm: ${typed}_`, tone: token.startsWith(typed) ? 'warning' : 'critical', bold: true },
      { text: matches ? 'enter to run, esc to cancel' : 'esc to cancel', tone: 'muted' },
    ];
  }
  return [{ text: 'press y to run, n or esc to cancel', tone: 'warning', bold: true }];
}

export interface ConfirmDialogProps {
  readonly plan: PlanView;
  /** What the user typed so far when a token must be typed. */
  readonly typed: string;
  readonly width: number;
  readonly theme: Theme;
}

function colourOf(tone: Tone, theme: Theme): string | undefined {
  return tone === undefined ? undefined : theme.color[tone];
}

function DialogBox({ lines, width, theme, accent }: { lines: readonly DialogLine[]; width: number; theme: Theme; accent: Tone }): ReactElement {
  const inner = Math.max(width - 4, 1);
  const border = colourOf(accent, theme);
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} borderStyle={theme.borderStyle} {...(border === undefined ? {} : { borderColor: border })} paddingX={1} flexShrink={0}>
      {lines.map((line, index) => (
        <Text key={index} {...colours(colourOf(line.tone, theme))} bold={line.bold ?? false} wrap="truncate">
          {line.text === '' ? ' ' : truncate(line.text, inner, theme.symbols.ellipsis)}
        </Text>
      ))}
    </Box>
  );
}

/** The lines of a confirmation dialog, inside its border. */
export function confirmLines(plan: PlanView, typed: string, inner: number): DialogLine[] {
  return [
    ...hanging('', plan.title, inner, 'header').map((line) => ({ ...line, bold: true })),
    ...hanging('target: ', plan.target, inner, undefined),
    { text: `danger: ${plan.danger}`, tone: dangerTone[plan.danger] },
    { text: '', tone: undefined },
    ...planStepLines(plan.steps, inner),
    { text: '', tone: undefined },
    ...confirmPrompt(plan, typed).flatMap((line) => hanging('', line.text, inner, line.tone).map((wrapped) => ({ ...wrapped, bold: line.bold ?? false }))),
  ];
}

/** An action's plan before it runs: title, target, danger, the exact steps, and the confirmation prompt. */
export function ConfirmDialog({ plan, typed, width, theme }: ConfirmDialogProps): ReactElement {
  const lines = confirmLines(plan, typed, Math.max(width - 4, 1));
  return <DialogBox lines={lines} width={width} theme={theme} accent={plan.refused !== null ? 'critical' : dangerTone[plan.danger]} />;
}

export type StepStatus = 'pending' | 'running' | 'done' | 'failed';

/** The progress of an execution (src/app's ActionProgress is accepted structurally). */
export interface ProgressView {
  /** The plan's steps with their status and last message, in order. */
  readonly steps: readonly { readonly description: string; readonly status: StepStatus; readonly message?: string | null | undefined }[];
  /** Fraction done 0..1, or null when the action cannot tell (indeterminate). */
  readonly fraction: number | null;
  /** The latest message of the execution (a phase, a summary at the end). */
  readonly message: string | null;
  readonly finished: boolean;
  /** How it ended: true, false, or null while running. */
  readonly ok: boolean | null;
}

export interface ProgressDialogProps {
  readonly plan: { readonly title: string; readonly steps: PlanView['steps'] };
  /** null before the first progress event: every step is shown pending. */
  readonly progress: ProgressView | null;
  /** Earlier messages, oldest first, shown above the latest one (the last few). */
  readonly messages?: readonly string[] | undefined;
  readonly width: number;
  readonly theme: Theme;
  /** How many messages to show at most (default 5). */
  readonly maxMessages?: number | undefined;
}

const statusTone: Readonly<Record<StepStatus, Tone>> = { pending: 'muted', running: 'accent', done: 'ok', failed: 'critical' };

/** "████▁▁▁▁  45%" in exactly `width` columns, or a note when the fraction is unknown. */
export function progressBar(fraction: number | null, width: number, theme: Theme): string {
  if (fraction === null) return truncate('in progress (no estimate)', width, theme.symbols.ellipsis);
  const clamped = Math.min(Math.max(fraction, 0), 1);
  const percent = `${Math.floor(clamped * 100)}%`.padStart(5);
  const barWidth = Math.max(width - percent.length, 0);
  const filled = Math.round(clamped * barWidth);
  const full = theme.symbols.sparkline[theme.symbols.sparkline.length - 1] ?? '#';
  const empty = theme.symbols.sparkline[0] ?? '.';
  return full.repeat(filled) + empty.repeat(barWidth - filled) + percent;
}

/** The lines of a progress dialog, inside its border. */
export function progressLines(props: ProgressDialogProps, inner: number): DialogLine[] {
  const { plan, progress, messages = [], theme, maxMessages = 5 } = props;
  const steps = progress?.steps ?? plan.steps.map((step) => ({ description: step.description, status: 'pending' as const, message: null }));
  const finished = progress?.finished ?? false;
  const lines: DialogLine[] = hanging('', plan.title, inner, 'header').map((line) => ({ ...line, bold: true }));
  lines.push({ text: '', tone: undefined });
  steps.forEach((step, index) => {
    // The status is a word, not only a colour, so that it reads under NO_COLOR.
    const prefix = `${step.status.padEnd(7)} ${index + 1}. `;
    lines.push(...hanging(prefix, step.description, inner, statusTone[step.status]));
    if (step.message !== undefined && step.message !== null && step.message !== '') {
      lines.push(...hanging(' '.repeat(prefix.length), step.message, inner, 'muted'));
    }
  });
  if (progress !== null && !finished) {
    lines.push({ text: '', tone: undefined });
    lines.push({ text: progressBar(progress.fraction, inner, theme), tone: 'accent' });
  }
  const latestMessage = progress?.message ?? null;
  const recent = [...messages, ...(latestMessage === null || latestMessage === messages[messages.length - 1] ? [] : [latestMessage])].slice(-maxMessages);
  if (recent.length > 0) {
    lines.push({ text: '', tone: undefined });
    for (const message of recent) lines.push(...hanging('', message, inner, undefined));
  }
  lines.push({ text: '', tone: undefined });
  const failed = progress?.ok === false || steps.some((step) => step.status === 'failed');
  if (!finished) lines.push({ text: progress === null ? 'starting' : 'running; esc closes once finished', tone: 'muted' });
  else lines.push({ text: `${failed ? 'failed' : 'finished'}; esc to close`, tone: failed ? 'critical' : 'ok', bold: true });
  return lines;
}

/** A running (or just finished) action: its steps with their status, a progress bar and messages. */
export function ProgressDialog(props: ProgressDialogProps): ReactElement {
  const lines = progressLines(props, Math.max(props.width - 4, 1));
  const failed = props.progress?.ok === false || (props.progress?.steps.some((step) => step.status === 'failed') ?? false);
  const accent: Tone = failed ? 'critical' : props.progress?.finished === true ? 'ok' : 'accent';
  return <DialogBox lines={lines} width={props.width} theme={props.theme} accent={accent} />;
}
