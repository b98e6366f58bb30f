// The egress address classifier against the spellings an app can send: every form of IPv4 and IPv6,
// embedded IPv4 (mapped, compatible, translated, NAT64, 6to4), zone ids, brackets, trailing dots.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyAddress, literalAddress, recentOwnAddresses, type AddressClass } from '../../../sidecar/src/outbound/egress-address.ts';

const SPELLINGS: [string, AddressClass][] = [
  // IPv4 loopback, however written
  ['127.0.0.1', 'loopback'],
  ['127.9.9.9', 'loopback'],
  ['2130706433', 'loopback'],
  ['0177.0.0.1', 'loopback'],
  ['0177.1', 'loopback'],
  ['0x7f.1', 'loopback'],
  ['0x7f000001', 'loopback'],
  ['0x7F.0.0.0x1', 'loopback'],
  ['127.1', 'loopback'],
  ['127.0.1', 'loopback'],
  ['127.0.0.1.', 'loopback'],
  // unspecified: connecting to it reaches this host
  ['0', 'unspecified'],
  ['0.0.0.0', 'unspecified'],
  ['0x0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  // cloud metadata, every provider's, every spelling
  ['169.254.169.254', 'metadata'],
  ['2852039166', 'metadata'],
  ['0xa9fea9fe', 'metadata'],
  ['0xa9.0xfe.0xa9.0xfe', 'metadata'],
  ['0251.0376.0251.0376', 'metadata'],
  ['169.254.43518', 'metadata'],
  ['169.254.169.254.', 'metadata'],
  ['169.254.170.2', 'metadata'],
  ['169.254.170.23', 'metadata'],
  ['100.100.100.200', 'metadata'],
  ['168.63.129.16', 'metadata'],
  ['192.0.0.192', 'metadata'],
  // other IPv4 classes
  ['169.254.1.1', 'link-local'],
  ['255.255.255.255', 'broadcast'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['10.1.2.3', 'private'],
  ['012.1.2.3', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'private'],
  ['192.0.2.1', 'reserved'],
  ['198.18.0.1', 'reserved'],
  ['240.0.0.1', 'reserved'],
  ['93.184.216.34', 'public'],
  ['172.32.0.1', 'public'],
  // IPv6 loopback and unspecified, however written
  ['::1', 'loopback'],
  ['[::1]', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['0000::1', 'loopback'],
  ['0000:0000:0000:0000:0000:0000:0000:0001', 'loopback'],
  ['::0:1', 'loopback'],
  ['::1%lo', 'loopback'],
  ['[::1%25lo]', 'loopback'],
  ['::', 'unspecified'],
  ['[::]', 'unspecified'],
  ['0::0', 'unspecified'],
  // IPv4-mapped, -compatible and -translated
  ['::ffff:7f00:1', 'loopback'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['0:0:0:0:0:ffff:127.0.0.1', 'loopback'],
  ['[0:0:0:0:0:FFFF:7F00:0001]', 'loopback'],
  ['::ffff:a9fe:a9fe', 'metadata'],
  ['[::ffff:169.254.169.254]', 'metadata'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:10.0.0.1', 'private'],
  ['::127.0.0.1', 'loopback'],
  ['::7f00:1', 'loopback'],
  ['::a9fe:a9fe', 'metadata'],
  ['::ffff:0:7f00:1', 'loopback'],
  ['::ffff:0:a9fe:a9fe', 'metadata'],
  // NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16) carrying IPv4
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::127.0.0.1', 'loopback'],
  ['64:ff9b::169.254.169.254', 'metadata'],
  ['64:ff9b:1::a9fe:a9fe', 'metadata'],
  ['64:ff9b::a00:1', 'private'],
  ['64:ff9b::808:808', 'public'],
  ['2002:7f00:1::', 'loopback'],
  ['2002:a9fe:a9fe::1', 'metadata'],
  ['2002:a00:1::1', 'private'],
  ['2002:808:808::1', 'public'],
  // IPv6 link-local (zone ids too), multicast, metadata, ULA, reserved, public
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['[fe80::1%25eth0]', 'link-local'],
  ['FE80::1', 'link-local'],
  ['fe80::a9fe:a9fe', 'metadata'],
  ['fe80::a9fe:a9fe%eth0', 'metadata'],
  ['ff02::1', 'multicast'],
  ['fd00:ec2::254', 'metadata'],
  ['FD00:EC2::254', 'metadata'],
  ['fd00:ec2:0:0:0:0:0:254', 'metadata'],
  ['fd00:ec2::23', 'metadata'],
  ['fd12:3456::1', 'private'],
  ['fc00::1', 'private'],
  ['2001:db8::1', 'reserved'],
  ['2606:4700:4700::1111', 'public'],
];

describe('egress address classes', () => {
  it(`classes ${SPELLINGS.length} spellings by the address they reach`, () => {
    assert.ok(SPELLINGS.length >= 40);
    const wrong = SPELLINGS.map(([spelling, expected]) => [spelling, expected, classifyAddress(spelling)] as const).filter(([, expected, got]) => got !== expected);
    assert.deepEqual(wrong, []);
  });

  it('the pod\'s own addresses are their own class; loopback stays loopback', () => {
    const own = new Set(['10.9.9.9', 'fd12::9', '127.0.0.1']);
    assert.equal(classifyAddress('10.9.9.9', own), 'own');
    assert.equal(classifyAddress('::ffff:10.9.9.9', own), 'own');
    assert.equal(classifyAddress('0xa.9.0x909', own), 'own');
    assert.equal(classifyAddress('fd12:0::9', own), 'own');
    assert.equal(classifyAddress('64:ff9b::a09:909', own), 'own');
    assert.equal(classifyAddress('127.0.0.1', own), 'loopback');
    assert.equal(classifyAddress('10.9.9.8', own), 'private');
  });

  it('the pod\'s own addresses are read once per TTL, not at each call', () => {
    let now = 0;
    const readings: Set<string>[] = [];
    const own = recentOwnAddresses({ ttlMs: 1000, now: () => now, read: () => { readings.push(new Set([`10.0.0.${readings.length}`])); return readings.at(-1)!; } });
    assert.deepEqual([...own()], ['10.0.0.0']);
    now = 999;
    assert.deepEqual([...own()], ['10.0.0.0']);
    assert.equal(readings.length, 1, 'one reading within the TTL');
    now = 1000;
    assert.deepEqual([...own()], ['10.0.0.1'], 'read again once the TTL is over');
    assert.equal(readings.length, 2);
  });

  it('a literal becomes the one address to dial, in canonical text; names are not literals', () => {
    const dial: [string, string | undefined][] = [
      ['0x7f.1', '127.0.0.1'],
      ['2852039166', '169.254.169.254'],
      ['[0:0:0:0:0:ffff:127.0.0.1]', '127.0.0.1'],
      ['::ffff:a9fe:a9fe', '169.254.169.254'],
      ['0000::1', '::1'],
      ['fe80::1%eth0', 'fe80::1'],
      ['[2606:4700:4700:0:0:0:0:1111]', '2606:4700:4700::1111'],
      ['93.184.216.34.', '93.184.216.34'],
      ['example.com', undefined],
      ['localhost', undefined],
      ['1.2.3.4.5', undefined],
      ['4294967296', undefined],
      ['08.0.0.1', undefined],
    ];
    assert.deepEqual(dial.map(([spelling]) => [spelling, literalAddress(spelling)]), dial);
  });

  it('refuses to class a name (names are resolved first)', () => {
    assert.throws(() => classifyAddress('example.com'), TypeError);
  });
});
