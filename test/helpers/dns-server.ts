// A test DNS server speaking the real protocol (UDP, dns-packet) on 127.0.0.1, port 0. Tests set the
// A/AAAA records of names (with the TTL they want), count the queries, wait for the n-th query of a
// name, and make the server fail (SERVFAIL) or go silent to test what a resolver keeps.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { once } from 'node:events';
import dnsPacket from 'dns-packet';

export interface TestRecord {
  address: string;
  /** Seconds. */
  ttl: number;
}

export type FailureMode = 'none' | 'servfail' | 'silent';

export class TestDnsServer {
  readonly #socket: Socket;
  readonly #a = new Map<string, TestRecord[]>();
  readonly #aaaa = new Map<string, TestRecord[]>();
  readonly #queries = new Map<string, number>();
  #waiters: { name: string; count: number; resolve: () => void }[] = [];
  /** How the server answers now: normally, SERVFAIL to everything, or not at all. */
  failure: FailureMode = 'none';

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('message', (message, remote) => this.#answer(message, remote));
  }

  static async start(): Promise<TestDnsServer> {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    return new TestDnsServer(socket);
  }

  get port(): number {
    return this.#socket.address().port;
  }

  /** For node's dns Resolver#setServers and config `discovery.dns.servers`. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Set (replace) the A records of a name; an empty list removes the name (NXDOMAIN). */
  setA(name: string, records: TestRecord[]): void {
    if (records.length === 0) this.#a.delete(name.toLowerCase());
    else this.#a.set(name.toLowerCase(), records);
  }

  setAAAA(name: string, records: TestRecord[]): void {
    if (records.length === 0) this.#aaaa.delete(name.toLowerCase());
    else this.#aaaa.set(name.toLowerCase(), records);
  }

  /** Queries received for a name, of any type. */
  queries(name: string): number {
    return this.#queries.get(name.toLowerCase()) ?? 0;
  }

  /** Resolves once `count` queries of `name` (any type) have been received in total. */
  untilQueries(name: string, count: number): Promise<void> {
    if (this.queries(name) >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ name: name.toLowerCase(), count, resolve }));
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }

  #answer(message: Buffer, remote: RemoteInfo): void {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    this.#queries.set(name, (this.#queries.get(name) ?? 0) + 1);
    if (this.failure === 'silent') {
      this.#wake();
      return;
    }
    const known = this.#a.has(name) || this.#aaaa.has(name);
    const records = question.type === 'A' ? this.#a.get(name) ?? [] : question.type === 'AAAA' ? this.#aaaa.get(name) ?? [] : [];
    const answers: dnsPacket.Answer[] = records.map((r) => question.type === 'A'
      ? { type: 'A', name: question.name, class: 'IN', ttl: r.ttl, data: r.address }
      : { type: 'AAAA', name: question.name, class: 'IN', ttl: r.ttl, data: r.address });
    const rcode = this.failure === 'servfail' ? 'SERVFAIL' : known ? 'NOERROR' : 'NXDOMAIN';
    const response = dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      // QR, AA, RD copied, RA, and the rcode.
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcodeBits(rcode),
      questions: [question],
      answers: this.failure === 'servfail' ? [] : answers,
    });
    // Counted (and waiters woken) only once the answer is on its way.
    this.#socket.send(response, remote.port, remote.address, () => this.#wake());
  }

  #wake(): void {
    const done = this.#waiters.filter((w) => this.queries(w.name) >= w.count);
    this.#waiters = this.#waiters.filter((w) => !done.includes(w));
    for (const w of done) w.resolve();
  }
}

function rcodeBits(rcode: 'NOERROR' | 'SERVFAIL' | 'NXDOMAIN'): number {
  return rcode === 'NOERROR' ? 0 : rcode === 'SERVFAIL' ? 2 : 3;
}
