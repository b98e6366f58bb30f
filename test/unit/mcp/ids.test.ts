import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { newMessageId } from '../../../sidecar/src/mcp/ids.ts';

describe('newMessageId', () => {
  it('makes 10,000 unique ids that sort lexicographically in creation order', () => {
    const ids = Array.from({ length: 10_000 }, () => newMessageId());
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    for (let i = 1; i < ids.length; i++) {
      assert.ok(ids[i - 1]! < ids[i]!, `id ${i} (${ids[i]}) sorts after id ${i - 1} (${ids[i - 1]})`);
    }
  });

  it('is a 26-character Crockford base-32 ULID whose time part is the creation time', () => {
    const before = Date.now();
    const id = newMessageId();
    const after = Date.now();
    assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const time = [...id.slice(0, 10)].reduce((acc, ch) => acc * 32 + alphabet.indexOf(ch), 0);
    assert.ok(time >= before && time <= after, `${time} within [${before}, ${after}]`);
  });
});
