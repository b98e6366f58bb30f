// A development certificate authority for `mcp-mesh certs`: a CA (ca.crt, ca.key) made once, and per
// service a short-lived certificate with its SPIFFE ID, for both ends of mTLS. For development and
// tests only: in a cluster, certificates come from cert-manager or another CA (docs/security.md).
// Keys are RSA 2048 made by Node's crypto (fast, native); node-forge builds and signs the certificates.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import { splitServiceName } from '../discovery/resolver.ts';
import { spiffeUri } from './identity.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

interface CertificateAuthority {
  certPem: string;
  keyPem: string;
}

interface IssuedCert {
  certPem: string;
  keyPem: string;
  spiffeId: string;
}

function rsaKeyPair(): { privatePem: string; publicKey: forge.pki.PublicKey; privateKey: forge.pki.PrivateKey } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(privatePem) as forge.pki.rsa.PrivateKey;
  return { privatePem, privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive
  return bytes.toString('hex');
}

/** A new self-signed CA valid for `days`. */
function createCa(options: { trustDomain: string; days?: number }): CertificateAuthority {
  const keys = rsaKeyPair();
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + (options.days ?? 30) * DAY_MS);
  const subject = [{ name: 'commonName', value: `mcp-mesh development CA (${options.trustDomain})` }, { name: 'organizationName', value: 'mcp-mesh development' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem };
}

/**
 * A certificate for `service` in `namespace`, signed by `ca`: URI SAN spiffe://<td>/ns/<ns>/sa/<service>
 * (the only URI SAN, as an X.509-SVID wants), DNS SANs localhost, <service>, <service>.<ns>,
 * <service>.<ns>.svc and IP SAN 127.0.0.1; usable as server and client certificate.
 */
function issueCert(ca: CertificateAuthority, options: { trustDomain: string; service: string; namespace: string; days?: number }): IssuedCert {
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  const keys = rsaKeyPair();
  const spiffeId = spiffeUri(options.trustDomain, options.namespace, options.service);
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Math.min(Date.now() + (options.days ?? 7) * DAY_MS, caCert.validity.notAfter.getTime()));
  cert.setSubject([{ name: 'commonName', value: `${options.service}.${options.namespace}` }, { name: 'organizationName', value: 'mcp-mesh development' }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    {
      name: 'subjectAltName', altNames: [
        { type: 6, value: spiffeId },
        { type: 2, value: 'localhost' },
        { type: 2, value: options.service },
        { type: 2, value: `${options.service}.${options.namespace}` },
        { type: 2, value: `${options.service}.${options.namespace}.svc` },
        { type: 7, ip: '127.0.0.1' },
      ],
    },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem, spiffeId };
}

/** Parse "NAME" or "NAME.NS". */
function parseServiceArg(arg: string): { service: string; namespace: string } {
  const [service, namespace] = splitServiceName(arg, 'default');
  const label = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/; // a name with a second dot fails it too
  if (!label.test(service) || !label.test(namespace)) throw new Error(`--service ${arg}: want NAME or NAME.NAMESPACE (DNS labels)`);
  return { service, namespace };
}

export interface WrittenCerts {
  caCreated: boolean;
  files: string[];
  ids: string[];
}

/**
 * `mcp-mesh certs`: the CA in `out` (made if ca.crt/ca.key are absent), then per service
 * `<arg>.crt` and `<arg>.key` (arg as given: "payments" or "payments.shop"). Keys are written 0600.
 */
export function writeDevCerts(options: { out: string; trustDomain: string; services: string[]; days?: number; caDays?: number }): WrittenCerts {
  mkdirSync(options.out, { recursive: true });
  const caCrt = path.join(options.out, 'ca.crt');
  const caKey = path.join(options.out, 'ca.key');
  let ca: CertificateAuthority;
  let caCreated = false;
  const files: string[] = [];
  if (existsSync(caCrt) && existsSync(caKey)) {
    ca = { certPem: readFileSync(caCrt, 'utf8'), keyPem: readFileSync(caKey, 'utf8') };
  } else {
    ca = createCa({ trustDomain: options.trustDomain, days: options.caDays });
    writeFileSync(caKey, ca.keyPem, { mode: 0o600 });
    writeFileSync(caCrt, ca.certPem);
    caCreated = true;
    files.push(caCrt, caKey);
  }
  const ids: string[] = [];
  for (const arg of options.services) {
    const { service, namespace } = parseServiceArg(arg);
    const issued = issueCert(ca, { trustDomain: options.trustDomain, service, namespace, days: options.days });
    const crt = path.join(options.out, `${arg}.crt`);
    const key = path.join(options.out, `${arg}.key`);
    writeFileSync(key, issued.keyPem, { mode: 0o600 });
    writeFileSync(crt, issued.certPem);
    files.push(crt, key);
    ids.push(issued.spiffeId);
  }
  return { caCreated, files, ids };
}
