import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { allowedBy, egressAddress, type EgressResolver } from '../../../sidecar/src/outbound/egress.ts';
import { parseConfig } from '../../../sidecar/src/config/load.ts';
import { parseRange } from '../../../sidecar/src/outbound/egress-address.ts';

/** A resolver that knows a few names and counts its look-ups. */
function testResolver(table: Record<string, string[]>): EgressResolver & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (name: string) => {
    asked.push(name);
    const addresses = table[name];
    if (!addresses) throw Object.assign(new Error(`no such name ${name}`), { code: 'ENOTFOUND' });
    return addresses;
  };
  return Object.assign(resolve, { asked });
}

const NAMES = {
  'loop.test': ['127.0.0.1'],
  'loop6.test': ['::1'],
  'mapped.test': ['::ffff:127.0.0.1'],
  'meta.test': ['::ffff:a9fe:a9fe'],
  'nat64.test': ['64:ff9b::a9fe:a9fe'],
  'mixed.test': ['93.184.216.34', '127.0.0.1'],
  'public.test': ['93.184.216.34', '2606:4700:4700::1111'],
  'db.internal': ['10.1.2.3'],
  'ula.internal': ['fd12::5'],
  'alibaba.test': ['100.100.100.200'],
  'self.test': ['10.9.9.9'],
};
const noOwn = () => new Set<string>();

describe('egress', () => {
  it('the allow list: exact names, *.domain for subdomains only, * for any', () => {
    const allow = ['api.stripe.com', '*.googleapis.com'];
    assert.equal(allowedBy('api.stripe.com', allow), 'api.stripe.com');
    assert.equal(allowedBy('API.Stripe.com.', allow), 'api.stripe.com');
    assert.equal(allowedBy('storage.googleapis.com', allow), '*.googleapis.com');
    assert.equal(allowedBy('googleapis.com', allow), undefined);
    assert.equal(allowedBy('evil-googleapis.com', allow), undefined);
    assert.equal(allowedBy('stripe.com', allow), undefined);
    assert.equal(allowedBy('anything.example', ['*']), '*');
    assert.equal(allowedBy('anything.example', []), undefined);
  });

  it('an IP literal, however spelled, is admitted by * or an address / CIDR entry holding it, never by a name entry', () => {
    assert.equal(allowedBy('10.203.0.1', ['10.203.0.1']), '10.203.0.1');
    assert.equal(allowedBy('::ffff:10.203.0.1', ['10.203.0.1']), '10.203.0.1');
    assert.equal(allowedBy('0xa.0xcb.0.1', ['10.203.0.0/24']), '10.203.0.0/24');
    assert.equal(allowedBy('fd12:0:0::5', ['fd12::/16']), 'fd12::/16');
    assert.equal(allowedBy('10.204.0.1', ['10.203.0.0/24']), undefined);
    assert.equal(allowedBy('2130706433', ['*.example.com', 'example.com']), undefined);
    assert.equal(allowedBy('127.0.0.1', ['*']), '*', 'admitted by name here; the address check refuses it');
  });

  it('literal hosts are classed, not resolved: loopback and metadata spellings are refused with their class', async () => {
    const resolve = testResolver(NAMES);
    for (const [host, refused] of [['2130706433', 'loopback'], ['0x7f.1', 'loopback'], ['::ffff:a9fe:a9fe', 'metadata'], ['0:0:0:0:0:ffff:127.0.0.1', 'loopback'], ['fe80::1%eth0', 'link-local'], ['0', 'unspecified']] as const) {
      const decision = await egressAddress(host, { allow: ['*'], resolve, ownAddresses: noOwn });
      assert.equal(decision.refused, refused, host);
      assert.equal(decision.refusal?.code, 'EGRESS_NOT_ALLOWED', host);
      assert.match(decision.refusal!.message, new RegExp(`"${host.replace(/[.]/g, '\\.')}" resolves to ${decision.address!.replace(/[.]/g, '\\.')}, .*\\(${refused}\\)`), host);
      assert.equal(decision.dial, undefined);
    }
    assert.deepEqual(resolve.asked, []);
  });

  it('names are resolved once and every address is checked: one bad address refuses the host', async () => {
    const resolve = testResolver(NAMES);
    const decide = (host: string, allow: string[] = ['*']) => egressAddress(host, { allow, resolve, ownAddresses: () => new Set(['10.9.9.9']) });
    const refusals = [['loop.test', 'loopback', '127.0.0.1'], ['loop6.test', 'loopback', '::1'], ['mapped.test', 'loopback', '127.0.0.1'], ['loop.test.', 'loopback', '127.0.0.1'],
      ['meta.test', 'metadata', '169.254.169.254'], ['nat64.test', 'metadata', '64:ff9b::a9fe:a9fe'], ['mixed.test', 'loopback', '127.0.0.1'], ['self.test', 'own', '10.9.9.9']] as const;
    for (const [host, refused, address] of refusals) {
      const decision = await decide(host);
      assert.deepEqual([decision.refused, decision.address, decision.dial], [refused, address, undefined], host);
    }
    assert.deepEqual(resolve.asked, ['loop.test', 'loop6.test', 'mapped.test', 'loop.test', 'meta.test', 'nat64.test', 'mixed.test', 'self.test'], 'one look-up per call, trailing dot dropped');
    assert.deepEqual(await decide('public.test'), { host: 'public.test', address: '93.184.216.34', dial: '93.184.216.34' });
  });

  it('localhost names are loopback without asking any resolver (RFC 6761)', async () => {
    const resolve = testResolver({ localhost: ['93.184.216.34'], 'app.localhost': ['93.184.216.34'] });
    for (const host of ['localhost', 'LOCALHOST.', 'app.localhost']) {
      assert.equal((await egressAddress(host, { allow: ['*'], resolve, ownAddresses: noOwn })).refused, 'loopback', host);
    }
    assert.deepEqual(resolve.asked, []);
  });

  it('private addresses only when an entry names them: the exact host name, or an address / CIDR entry holding the address', async () => {
    const resolve = testResolver(NAMES);
    const decide = async (host: string, allow: string[]) => (await egressAddress(host, { allow, resolve, ownAddresses: noOwn }));
    assert.equal((await decide('db.internal', ['*'])).refused, 'private');
    assert.equal((await decide('db.internal', ['*.internal'])).refused, 'private');
    assert.match((await decide('db.internal', ['*'])).refusal!.message, /10\.1\.2\.3, a private address \(private\).*egress\.allow names it/);
    assert.equal((await decide('db.internal', ['db.internal'])).dial, '10.1.2.3');
    assert.equal((await decide('DB.internal.', ['*', 'db.internal'])).dial, '10.1.2.3');
    assert.equal((await decide('db.internal', ['*.internal', '10.0.0.0/8'])).dial, '10.1.2.3');
    assert.equal((await decide('db.internal', ['*', '10.1.2.3'])).dial, '10.1.2.3');
    assert.equal((await decide('db.internal', ['*', '192.168.0.0/16'])).refused, 'private');
    assert.equal((await decide('ula.internal', ['*', 'fd00::/8'])).dial, 'fd12::5');
    assert.equal((await decide('ula.internal', ['*'])).refused, 'private');
    assert.equal((await decide('10.203.0.1', ['10.203.0.1'])).dial, '10.203.0.1');
    assert.equal((await decide('0xa.0xcb.0.1', ['10.203.0.0/24'])).dial, '10.203.0.1');
    assert.equal((await decide('10.203.0.1', ['*'])).refused, 'private');
    assert.equal((await decide('192.0.2.7', ['*'])).refused, 'reserved');
    // An entry never opens what is always forbidden, even one naming it.
    assert.equal((await decide('alibaba.test', ['alibaba.test', '100.64.0.0/10'])).refused, 'metadata');
    assert.equal((await decide('127.0.0.1', ['127.0.0.0/8'])).refused, 'loopback');
    assert.equal((await decide('fd00:ec2::254', ['fd00::/8'])).refused, 'metadata');
  });

  it('an unresolvable name is refused, saying so', async () => {
    const decision = await egressAddress('nowhere.test', { allow: ['*'], resolve: testResolver({}), ownAddresses: noOwn });
    assert.deepEqual([decision.refused, decision.address, decision.refusal?.code], ['unresolved', undefined, 'EGRESS_NOT_ALLOWED']);
    assert.match(decision.refusal!.message, /cannot resolve external host "nowhere\.test": ENOTFOUND/);
  });

  it('config: egress.allow takes names, wildcards, addresses and CIDR ranges, and refuses malformed ranges', () => {
    const config = (entries: string[]) => parseConfig(`service: web\napp:\n  port: 1\negress:\n  allow: ${JSON.stringify(entries)}\n`, undefined);
    const good = ['*', '*.example.com', 'api.example.com', '10.0.0.0/8', '10.203.0.1', '172.16.0.0/12', 'fd00::/8', 'fd00:ec2::/32', '2001:db8::1', '::1', '1:2:3:4:5:6:7:8', 'a::b/64'];
    assert.deepEqual(config(good).egress.allow, good);
    for (const entry of good.filter((e) => /[:/]/.test(e))) assert.ok(parseRange(entry), `${entry} is read as a range`);
    assert.deepEqual(parseConfig('service: web\napp:\n  port: 1\n', undefined, { MESH_EGRESS_ALLOW: '10.0.0.0/8,fd00::/8,*.example.com' }).egress.allow, ['10.0.0.0/8', 'fd00::/8', '*.example.com']);
    for (const entry of ['10.0.0.0/33', '300.1.1.1/8', '10.0.0/8', 'fd00:::/8', '1::2::3', 'fd00::/129', '1:2:3:4:5:6:7:8:9', 'http://x', '[::1]', 'fe80::1%eth0']) {
      assert.throws(() => config([entry]), /egress/, entry);
    }
  });
});
