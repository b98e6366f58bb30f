export interface HostPort {
  host: string;
  port: number;
}

/** "127.0.0.1:15001" | "[::1]:15001" | "localhost:0" → { host, port }. Input is already schema-checked. */
export function parseHostPort(address: string): HostPort {
  const colon = address.lastIndexOf(':');
  let host = address.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(address.slice(colon + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`port out of range in ${address}`);
  return { host, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
