/**
 * A real S3-protocol server for tests: s3rver (in a child process) on 127.0.0.1 with a throwaway
 * data directory and one bucket, recording the object events it emits (to tell a single PUT from
 * a multipart upload or a copy). Also a small HTTP proxy in front of it that implements If-None-Match: * on writes, which
 * s3rver ignores, so that the conditional-write path can be tested against real requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { S3Credentials } from '../../src/backup/repository/s3.js';
import { onProcessEnd } from './exit-cleanup.js';

// The AWS SDK warns under Node 20 that its 2027 releases need Node 22; the CLI launcher sets the same.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

/**
 * Runs s3rver in a child Node with the OpenSSL legacy provider: s3rver encrypts its ListObjectsV2
 * continuation tokens with DES, which OpenSSL 3 only has there (without it every truncated listing
 * is a 500). The child prints its port, then one JSON line per object event.
 */
const childScript = `
const S3rver = require('s3rver');
const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: process.argv[1], configureBuckets: [{ name: process.argv[2], configs: [] }] });
server.on('event', (event) => {
  for (const record of event.Records) process.stdout.write(JSON.stringify({ name: record.eventName, key: decodeURIComponent(record.s3.object.key) }) + '\\n');
});
server.run().then((address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'), (error) => { console.error(error); process.exit(1); });
process.on('SIGTERM', () => process.exit(0));
`;

/** An object event as s3rver reports it: "ObjectCreated:Put" (single PUT), ":Post" (multipart complete), ":Copy", "ObjectRemoved:Delete". */
export interface S3Event {
  readonly name: string;
  readonly key: string;
}

export class S3Server {
  readonly bucket = 'pgwarden-test';
  readonly events: S3Event[] = [];
  /** s3rver's default account. It checks the key id (any other is InvalidAccessKeyId) but not V4 signatures. */
  readonly credentials: S3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', sessionToken: undefined, source: 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY' };
  endpoint = '';

  private constructor(
    readonly directory: string,
    private readonly child: ChildProcess,
  ) {}

  /** Starts s3rver on a free port with the bucket created. */
  static async start(): Promise<S3Server> {
    const directory = mkdtempSync(join(tmpdir(), 'pgwarden-s3rver-'));
    const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', childScript, directory, 'pgwarden-test'], { stdio: ['ignore', 'pipe', 'inherit'] });
    onProcessEnd(() => {
      child.kill('SIGKILL');
      rmSync(directory, { recursive: true, force: true });
    });
    const server = new S3Server(directory, child);
    const port = await new Promise<number>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`s3rver exited with status ${code ?? 'null'} before listening`)));
      createInterface({ input: child.stdout }).on('line', (line) => {
        const message = JSON.parse(line) as { port?: number } & S3Event;
        if (message.port !== undefined) resolve(message.port);
        else server.events.push({ name: message.name, key: message.key });
      });
    });
    server.endpoint = `http://127.0.0.1:${port}`;
    return server;
  }

  /** Where s3rver keeps the bytes of an object (its full key, prefix included). */
  objectPath(fullKey: string): string {
    const parts = fullKey.split('/');
    const name = parts.pop() ?? '';
    return join(this.directory, this.bucket, ...parts, `${name}._S3rver_object`);
  }

  /** Waits until s3rver has reported `count` events (they arrive on a pipe, after the HTTP response). */
  async eventsSettled(count: number): Promise<void> {
    const deadline = Date.now() + 5000;
    while (this.events.length < count) {
      if (Date.now() > deadline) throw new Error(`s3rver reported ${this.events.length} events, expected ${count}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/** What the proxy calls when a HEAD of an object found nothing, before it answers: a competing writer can act there. */
export type MissHook = (fullKey: string) => Promise<void>;

/**
 * An HTTP proxy to an S3Server that answers 412 Precondition Failed to a write carrying
 * If-None-Match: * (PutObject, CopyObject, CompleteMultipartUpload) when the object exists, as
 * AWS S3 does. Requests are forwarded unchanged (same Host header, so signatures still match).
 */
export class ConditionalProxy {
  endpoint = '';
  onMiss: MissHook | undefined;
  /** Writes answered with 412. */
  refused = 0;
  private server: Server | undefined;

  constructor(private readonly upstream: S3Server) {}

  async start(): Promise<void> {
    const target = new URL(this.upstream.endpoint);
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://proxy');
      const [, bucket, ...rest] = url.pathname.split('/');
      const fullKey = decodeURIComponent(rest.join('/'));
      const isWrite = req.method === 'PUT' || (req.method === 'POST' && url.searchParams.has('uploadId'));
      const isPart = url.searchParams.has('partNumber');
      if (isWrite && !isPart && req.headers['if-none-match'] === '*' && bucket === this.upstream.bucket && existsSync(this.upstream.objectPath(fullKey))) {
        this.refused += 1;
        req.resume();
        req.on('end', () => {
          res.writeHead(412, { 'content-type': 'application/xml' });
          res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>');
        });
        return;
      }
      const forward = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (upstream: IncomingMessage) => {
          const relay = (): void => {
            res.writeHead(upstream.statusCode ?? 502, upstream.headers);
            upstream.pipe(res);
          };
          if (req.method === 'HEAD' && upstream.statusCode === 404 && rest.length > 0 && this.onMiss !== undefined) {
            const hook = this.onMiss;
            this.onMiss = undefined;
            hook(fullKey).then(relay, (error: unknown) => {
              res.writeHead(500);
              res.end(String(error));
            });
          } else {
            relay();
          }
        },
      );
      forward.on('error', (error) => {
        res.writeHead(502);
        res.end(error.message);
      });
      req.pipe(forward);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
