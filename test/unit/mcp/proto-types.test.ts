import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { Compression, MessageType, PROTO_PATH, Priority } from '../../../sidecar/src/mcp/codec.ts';
import { GENERATED_DIR, writeProtoTypes } from '../../../sidecar/src/mcp/write-proto-types.ts';

/** Every file under `dir`, by its path relative to `dir`, with its text. */
function filesOf(dir: string): Map<string, string> {
  const entries = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return new Map(entries.map((e) => {
    const file = path.join(e.parentPath, e.name);
    return [path.relative(dir, file), readFileSync(file, 'utf8')];
  }));
}

describe('types generated from mcp.proto', () => {
  const fresh = mkdtempSync(path.join(tmpdir(), 'mcp-proto-types-'));
  after(() => rmSync(fresh, { recursive: true, force: true }));

  it('are checked in as the generator writes them now (else: npm run proto:types)', () => {
    writeProtoTypes(fresh);
    const expected = filesOf(fresh);
    const checkedIn = filesOf(GENERATED_DIR);
    assert.deepEqual([...checkedIn.keys()].sort(), [...expected.keys()].sort(), 'the same files');
    for (const [file, text] of expected) assert.equal(checkedIn.get(file), text, `${file} is out of date: npm run proto:types`);
  });

  it("give codec.ts's enum values, the .proto's own", () => {
    const root = protobuf.loadSync(PROTO_PATH);
    for (const [name, values] of Object.entries({ MessageType, Priority, Compression })) {
      assert.deepEqual({ ...values }, root.lookupEnum(`mcpmesh.v1.${name}`).values, name);
    }
  });
});
