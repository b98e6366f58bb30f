// A TCP connection a test drives by hand, to see what a listener does with it: what it sent, and
// whether (and when) it closed the connection.
import { connect, type Socket } from 'node:net';

export interface RawConnection {
  socket: Socket;
  received: Buffer[];
  /** The listener's first bytes (an HTTP/2 server's SETTINGS): the connection is being served. */
  spoke: Promise<void>;
  closed: Promise<void>;
}

/** Connect to 127.0.0.1:`port` from `localAddress` (another loopback address is another peer). */
export function rawConnection(port: number, localAddress = '127.0.0.1'): RawConnection {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {}); // a refused connection may be reset: its close is what is checked
  const received: Buffer[] = [];
  const spoke = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received, spoke, closed };
}
