// Certificates for the mTLS tests, made by the same code as `mcp-mesh certs` (sidecar/src/security/certs.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeDevCerts } from '../../sidecar/src/security/certs.ts';

export interface CertDir {
  dir: string;
  /** tls config for a sidecar whose certificate is `<name>.crt` in this folder. */
  tls(name: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** (Re)issue certificates for services ("name" or "name.ns") with this folder's CA. */
  issue(...services: string[]): void;
  remove(): void;
}

export function makeCertDir(services: string[], trustDomain = 'cluster.local'): CertDir {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-certs-'));
  const issue = (...names: string[]) => { writeDevCerts({ out: dir, trustDomain, services: names }); };
  issue(...services);
  return {
    dir,
    tls: (name, extra = {}) => ({ cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`), ca: path.join(dir, 'ca.crt'), ...extra }),
    issue,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
