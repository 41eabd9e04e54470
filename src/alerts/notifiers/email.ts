/**
 * The email channel: nodemailer over SMTP. The password is read from the environment or a file at
 * each send (so a rotated secret is picked up) and never appears in a log line or an error.
 * Threading: a thread's first notice carries Message-ID <threadId@pgwarden>; its updates and the
 * resolved notice carry <id@pgwarden> and point back with In-Reply-To and References.
 */
import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import type { Notice } from '../types.js';
import { blocksToHtml, blocksToText, noticeBlocks } from './render.js';
import type { RenderOptions } from './render.js';

/** tls: TLS from the first byte (465); starttls: plain then STARTTLS, required; none: no TLS (local relays, tests). */
export type SmtpSecurity = 'tls' | 'starttls' | 'none';

export interface EmailConfig {
  readonly host: string;
  readonly port: number;
  readonly security: SmtpSecurity;
  /** Omit for relays that take mail without authentication. */
  readonly auth?: {
    readonly user: string;
    /** Name of the environment variable holding the password. */
    readonly passwordEnv?: string;
    /** Path of a file holding the password (trailing newline ignored). */
    readonly passwordFile?: string;
  };
  readonly from: string;
  readonly replyTo?: string;
  /** Connection, greeting and socket timeout (default 30 s). */
  readonly timeoutMs?: number;
  /** Accept a self-signed server certificate (default false). */
  readonly allowSelfSigned?: boolean;
  readonly runbookBaseUrl?: string;
}

/** What the email channel needs beyond its config (the environment, for tests). */
export interface EmailEnvironment {
  readonly env?: Readonly<Record<string, string | undefined>>;
  /**
   * Told about recipients the server refused while others accepted the mail: retrying would send
   * the accepted ones a duplicate, so the send counts as done and the refusal is reported here.
   */
  readonly onWarning?: (message: string) => void;
}

export interface EmailMessage {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly messageId: string;
  readonly inReplyTo: string | null;
  readonly references: string | null;
}

/** A failed send: the SMTP response and what to do, never the password. */
export class EmailError extends Error {
  override readonly name = 'EmailError';

  constructor(
    message: string,
    /** nodemailer's code: EAUTH, ECONNECTION, ETIMEDOUT, EENVELOPE, EMESSAGE… */
    readonly code: string | null,
    readonly responseCode: number | null,
  ) {
    super(message);
  }
}

export interface EmailNotifier {
  readonly send: (notice: Notice) => Promise<void>;
  readonly close: () => void;
}

function messageIdPart(value: string): string {
  // Message-ID local parts allow a restricted set: keep ids readable and replace the rest.
  return value.replace(/[^A-Za-z0-9._-]/g, '-');
}

/** The Message-ID that opens a thread. */
export function threadMessageId(threadId: string): string {
  return `<${messageIdPart(threadId)}@pgwarden>`;
}

/** The subject, text and HTML bodies and threading headers of a notice (pure). */
export function renderEmail(notice: Notice, options: RenderOptions = {}): EmailMessage {
  const blocks = noticeBlocks(notice, options);
  const root = threadMessageId(notice.threadId);
  const opensThread = notice.kind === 'firing';
  const replies = notice.kind === 'update' || notice.kind === 'resolved';
  return {
    subject: notice.subject,
    text: blocksToText(blocks),
    html: blocksToHtml(blocks, notice.subject),
    messageId: opensThread ? root : `<${messageIdPart(notice.id)}@pgwarden>`,
    inReplyTo: replies ? root : null,
    references: replies ? root : null,
  };
}

function readPassword(config: EmailConfig, env: Readonly<Record<string, string | undefined>>): string {
  const auth = config.auth;
  if (auth === undefined) return '';
  if (auth.passwordEnv !== undefined) {
    const value = env[auth.passwordEnv];
    if (value === undefined || value === '') throw new EmailError(`SMTP password: environment variable ${auth.passwordEnv} is not set`, 'ECONFIG', null);
    return value;
  }
  if (auth.passwordFile !== undefined) {
    try {
      return readFileSync(auth.passwordFile, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      const code = error instanceof Error ? ((error as NodeJS.ErrnoException).code ?? 'error') : 'error';
      throw new EmailError(`SMTP password: cannot read ${auth.passwordFile} (${code})`, 'ECONFIG', null);
    }
  }
  throw new EmailError('SMTP auth: give passwordEnv or passwordFile', 'ECONFIG', null);
}

/** Every form in which a secret could travel on the wire (AUTH PLAIN and LOGIN are base64). */
function secretForms(user: string, password: string): string[] {
  if (password === '') return [];
  const base64 = (value: string): string => Buffer.from(value, 'utf8').toString('base64');
  return [password, base64(password), base64(`\u0000${user}\u0000${password}`), base64(`${user}\u0000${user}\u0000${password}`)];
}

function scrub(message: string, secrets: readonly string[]): string {
  let out = message;
  for (const secret of secrets) out = out.split(secret).join('***');
  return out;
}

const hints: Readonly<Record<string, string>> = {
  EAUTH: 'authentication refused: check the SMTP user and password',
  ECONNECTION: 'cannot connect: check host, port and security (tls or starttls)',
  ETIMEDOUT: 'timed out: the SMTP server did not answer',
  ESOCKET: 'connection error: check host, port and security (tls or starttls)',
  EENVELOPE: 'a sender or recipient address was refused',
  EMESSAGE: 'the message was refused',
  ETLS: 'TLS failed: check security and the server certificate',
  EDNS: 'the SMTP host name does not resolve',
};

function describe(error: unknown, config: EmailConfig, secrets: readonly string[]): EmailError {
  if (error instanceof EmailError) return error;
  const fields = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; response?: unknown; responseCode?: unknown; message?: unknown };
  const code = typeof fields.code === 'string' ? fields.code : null;
  const response = typeof fields.response === 'string' ? fields.response.trim() : null;
  const responseCode = typeof fields.responseCode === 'number' ? fields.responseCode : null;
  const detail = response ?? (typeof fields.message === 'string' ? fields.message : String(error));
  // nodemailer reports a refused connection as a generic socket error; the errno says more.
  const refused = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH/.test(detail);
  const what = refused ? hints.ECONNECTION : ((code !== null ? hints[code] : undefined) ?? 'send failed');
  const message = `email via ${config.host}:${config.port}: ${what} (${detail})`;
  return new EmailError(scrub(message, secrets), code, responseCode);
}

function transportOptions(config: EmailConfig, password: string): SMTPTransport.Options {
  const timeout = config.timeoutMs ?? 30_000;
  return {
    host: config.host,
    port: config.port,
    secure: config.security === 'tls',
    requireTLS: config.security === 'starttls',
    ignoreTLS: config.security === 'none',
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    // nodemailer's logger would print the SMTP dialogue, AUTH included.
    logger: false,
    debug: false,
    tls: { rejectUnauthorized: config.allowSelfSigned !== true },
    ...(config.auth !== undefined ? { auth: { user: config.auth.user, pass: password } } : {}),
  };
}

/** An email channel; send() resolves once the SMTP server accepted the message for every recipient. */
export function createEmailNotifier(config: EmailConfig, environment: EmailEnvironment = {}): EmailNotifier {
  const env = environment.env ?? process.env;
  let transporter: Transporter<SMTPTransport.SentMessageInfo> | null = null;
  let transportPassword: string | null = null;
  const renderOptions: RenderOptions = config.runbookBaseUrl !== undefined ? { runbookBaseUrl: config.runbookBaseUrl } : {};

  const send = async (notice: Notice): Promise<void> => {
    let secrets: string[] = [];
    try {
      if (notice.recipients.length === 0) throw new EmailError(`email: notice ${notice.id} has no recipients (team ${notice.team} has no members)`, 'ECONFIG', null);
      const password = readPassword(config, env);
      secrets = secretForms(config.auth?.user ?? '', password);
      if (transporter === null || transportPassword !== password) {
        transporter?.close();
        transporter = nodemailer.createTransport(transportOptions(config, password));
        transportPassword = password;
      }
      const message = renderEmail(notice, renderOptions);
      const info = await transporter.sendMail({
        from: config.from,
        to: [...notice.recipients],
        ...(config.replyTo !== undefined ? { replyTo: config.replyTo } : {}),
        subject: message.subject,
        text: message.text,
        html: message.html,
        messageId: message.messageId,
        ...(message.inReplyTo !== null ? { inReplyTo: message.inReplyTo } : {}),
        ...(message.references !== null ? { references: message.references } : {}),
        date: notice.createdAt,
      });
      if (info.rejected.length > 0) {
        const rejected = info.rejected.map((entry) => (typeof entry === 'string' ? entry : entry.address)).join(', ');
        environment.onWarning?.(`email ${notice.id} via ${config.host}:${config.port}: recipients refused: ${rejected}`);
      }
    } catch (error) {
      throw describe(error, config, secrets);
    }
  };

  return {
    send,
    close: () => {
      transporter?.close();
      transporter = null;
    },
  };
}
