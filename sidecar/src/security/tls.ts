// Mutual TLS between sidecars: the certificate files (cert, key, CA), checked when read, turned into
// gRPC credentials for both ends, and re-read when they change. See docs/security.md.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ConfigError } from '../config/load.ts';
import { watchFiles, type FileWatch } from '../config/watch-files.ts';
import { identityOf, meshSource, type SpiffeId } from './identity.ts';

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** Certificate material that has been checked: the key fits the certificate, the CA signed it. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** This sidecar's own identity, from its certificate. */
  identity: SpiffeId;
  notAfter: Date;
  fingerprint: string;
}

/** Read and check the files. Throws ConfigError with a message meant for the user. */
export function loadMaterial(files: TlsFiles, trustDomain: string): TlsMaterial {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(`tls error: cannot read tls.${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = read('cert', files.cert);
  const key = read('key', files.key);
  const ca = read('ca', files.ca);
  let x509: X509Certificate;
  let caCerts: X509Certificate[];
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(`tls error: tls.cert ${files.cert} is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    caCerts = splitPem(ca.toString('utf8')).map((pem) => new X509Certificate(pem));
    if (caCerts.length === 0) throw new Error('no certificate in the file');
  } catch (err) {
    throw new ConfigError(`tls error: tls.ca ${files.ca} is not a PEM certificate bundle: ${(err as Error).message}`);
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not belong to the certificate');
  } catch (err) {
    throw new ConfigError(`tls error: tls.key ${files.key}: ${(err as Error).message}`);
  }
  if (!caCerts.some((c) => x509.checkIssued(c) && x509.verify(c.publicKey))) {
    throw new ConfigError(`tls error: tls.cert ${files.cert} is not signed by a CA in tls.ca ${files.ca}`);
  }
  const notAfter = new Date(x509.validTo);
  if (notAfter.getTime() <= Date.now()) throw new ConfigError(`tls error: tls.cert ${files.cert} expired at ${notAfter.toISOString()}`);
  const identity = identityOf(x509.subjectAltName, trustDomain);
  if (typeof identity === 'string') throw new ConfigError(`tls error: tls.cert ${files.cert}: ${identity}`);
  return { cert, key, ca, identity, notAfter, fingerprint: x509.fingerprint256 };
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The inbound listener: present our certificate, require and verify the peer's against the CA. */
export function serverCredentials(material: TlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], true);
}

/**
 * Links: present our certificate; verify the server's chain against the CA (Node does) and its
 * identity by its SPIFFE ID in our trust domain instead of by host name (peers are dialled by pod
 * address, which no certificate names).
 */
export function channelCredentials(material: TlsMaterial, trustDomain: string): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(material.ca, material.key, material.cert, {
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      const id = identityOf(cert.subjectaltname, trustDomain);
      return typeof id === 'string' ? new Error(`peer certificate refused: ${id}`) : undefined;
    },
  });
}

/**
 * The verified mesh name ("service.namespace") of the peer of a server call, from the certificate
 * the TLS handshake verified; a string explains why there is none.
 */
export function peerSource(call: { getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null }, trustDomain: string): { source: string; id: SpiffeId } | string {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  if (!cert) return 'no verified client certificate';
  const id = identityOf(cert.subjectaltname, trustDomain);
  return typeof id === 'string' ? id : { source: meshSource(id), id };
}

/**
 * Watch the folders of the three files (Kubernetes Secret mounts swap a `..data` symlink, editors
 * rename) and call `onChange` with new checked material. Material that does not check is logged and
 * ignored: the sidecar keeps the last good one.
 */
export function watchMaterial(files: TlsFiles, trustDomain: string, logger: Logger, onChange: (material: TlsMaterial) => void, current: TlsMaterial): FileWatch {
  const versionOf = (material: TlsMaterial) => material.fingerprint + material.ca.toString('base64');
  let last = versionOf(current);
  const reload = () => {
    let next: TlsMaterial;
    try {
      next = loadMaterial(files, trustDomain);
    } catch (err) {
      logger.error({ code: 'TLS_RELOAD_FAILED' }, `certificate files changed but cannot be used; keeping the previous ones: ${(err as Error).message}`);
      return;
    }
    const version = versionOf(next);
    if (version === last) return;
    last = version;
    onChange(next);
  };
  // The three files are written one after the other: read them once they are all there.
  return watchFiles({ files: [files.cert, files.key, files.ca] }, {
    debounceMs: 100, onChange: reload,
    onError: (err) => logger.error({ code: 'TLS_WATCH_FAILED', err: err.message }, 'watching the certificate files failed; new certificates will not be picked up until a restart'),
  });
}
