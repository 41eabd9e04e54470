/** A real SMTP server on 127.0.0.1 that parses and keeps every mail it accepts (smtp-server + mailparser). */
import type { AddressInfo } from 'node:net';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';

export interface MailSinkOptions {
  /** Require AUTH PLAIN/LOGIN with these credentials; without it, no authentication is offered. */
  readonly auth?: { readonly user: string; readonly password: string };
}

export class MailSink {
  readonly mails: ParsedMail[] = [];
  /** Refuse this many authentications before accepting good credentials again. */
  refuseAuth = 0;
  port = 0;
  private server: SMTPServer | null = null;

  constructor(private readonly options: MailSinkOptions = {}) {}

  /** Listens on `port` (0: a free one); the same port again after stop() simulates an outage that ends. */
  async start(port = 0): Promise<void> {
    const auth = this.options.auth;
    const server = new SMTPServer({
      secure: false,
      logger: false,
      ...(auth === undefined
        ? { disabledCommands: ['STARTTLS', 'AUTH'], authOptional: true }
        : {
            disabledCommands: ['STARTTLS'],
            allowInsecureAuth: true,
            authMethods: ['PLAIN', 'LOGIN'],
            onAuth: (login, _session, callback) => {
              if (this.refuseAuth > 0) {
                this.refuseAuth -= 1;
                callback(new Error('Invalid username or password'));
              } else if (login.username === auth.user && login.password === auth.password) {
                callback(null, { user: auth.user });
              } else {
                callback(new Error('Invalid username or password'));
              }
            },
          }),
      onData: (stream, _session, callback) => {
        simpleParser(stream)
          .then((mail) => {
            this.mails.push(mail);
            callback();
          })
          .catch((error: unknown) => callback(error instanceof Error ? error : new Error(String(error))));
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
