/**
 * A TCP port proxy for tests that cut one path of the network: clients connect to the proxy's
 * port on 127.0.0.1 and are piped to the target. close() stops accepting (the port refuses
 * connections) AND destroys every live connection, as a network cut seen from the client would
 * end them; open() listens again on the same port.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** The port clients connect to. */
  readonly port: number;
  readonly host: string;
  /** Whether it accepts connections now. */
  readonly isOpen: () => boolean;
  /** Connections piped since it was created. */
  readonly connections: () => number;
  /** Stops accepting and destroys every live connection. */
  close(): Promise<void>;
  /** Accepts connections again, on the same port. */
  open(): Promise<void>;
}

/** A proxy from a free port on 127.0.0.1 to target host:port, open at once. */
export async function startTcpProxy(target: { host: string; port: number }, port = 0): Promise<TcpProxy> {
  const host = '127.0.0.1';
  const live = new Set<Socket>();
  let count = 0;
  let server: Server | undefined;
  let boundPort = port;

  const listen = async (): Promise<void> => {
    const next = createServer((client) => {
      count += 1;
      const upstream = connect(target.port, target.host);
      live.add(client);
      live.add(upstream);
      const end = (): void => {
        client.destroy();
        upstream.destroy();
        live.delete(client);
        live.delete(upstream);
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      next.once('error', reject);
      next.listen(boundPort, host, () => {
        next.off('error', reject);
        resolve();
      });
    });
    const address = next.address();
    if (address !== null && typeof address === 'object') boundPort = address.port;
    server = next;
  };

  await listen();
  return {
    get port() {
      return boundPort;
    },
    host,
    isOpen: () => server !== undefined,
    connections: () => count,
    close: async () => {
      const current = server;
      server = undefined;
      for (const socket of live) socket.destroy();
      live.clear();
      if (current !== undefined) await new Promise<void>((resolve) => current.close(() => resolve()));
    },
    open: async () => {
      if (server === undefined) await listen();
    },
  };
}
