/**
 * The email end of bench/watch-scale: a real SMTP server (smtp-server) on 127.0.0.1 that notes the
 * moment it accepted each mail (the 250 after DATA), which is where "fault to mail" ends. Parsing
 * (mailparser) happens after the reply, so it is not counted.
 */
import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface AcceptedMail {
  /** Date.now() when the server accepted the message. */
  readonly at: number;
  readonly subject: string;
  readonly text: string;
}

export class MailClock {
  readonly mails: AcceptedMail[] = [];
  port = 0;
  private server: SMTPServer | undefined;

  /** Listens on a free port. */
  async start(): Promise<void> {
    const server = new SMTPServer({
      secure: false,
      logger: false,
      disabledCommands: ['STARTTLS', 'AUTH'],
      authOptional: true,
      onData: (stream, _session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          const at = Date.now();
          callback();
          simpleParser(Buffer.concat(chunks))
            .then((mail) => this.mails.push({ at, subject: mail.subject ?? '', text: mail.text ?? '' }))
            .catch((error: unknown) => process.stderr.write(`watch-scale: an accepted mail could not be parsed: ${String(error)}\n`));
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.server.address() as AddressInfo).port;
  }

  /** The first mail accepted at or after `since` whose subject is this one. */
  find(subject: string, since: number): AcceptedMail | undefined {
    return this.mails.find((mail) => mail.subject === subject && mail.at >= since);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
