// What is generated from the schema stays in step with it: the checked-in JSON Schema and the
// field tables of docs/policies.md (regenerate both with npm run policy:schema).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { JSON_SCHEMA_FILE, policyJsonSchema, policyReference, REFERENCE_FILE, withReference } from '../../../sidecar/src/policy/reference.ts';
import { FIELDS } from '../../../sidecar/src/policy/resolve.ts';
import { PolicyDocumentSchema } from '../../../sidecar/src/policy/schema.ts';
import { policy } from '../../helpers/policies.ts';

const STALE = 'stale: run npm run policy:schema and commit the result';

describe('generated from the schema', () => {
  it('policies/schema/policy.schema.json is the TypeBox schema', () => {
    assert.equal(readFileSync(JSON_SCHEMA_FILE, 'utf8'), policyJsonSchema(), STALE);
  });

  it('docs/policies.md has the current field tables', () => {
    const page = readFileSync(REFERENCE_FILE, 'utf8');
    assert.equal(page, withReference(page), STALE);
  });

  it('the reference has a row, with its default, for every setting', () => {
    const reference = policyReference();
    for (const f of FIELDS) {
      const row = reference.split('\n').find((line) => line.startsWith(`| \`spec.${f.spec.join('.')}\` |`));
      assert.ok(row, `no row for spec.${f.spec.join('.')}`);
      assert.ok(row.includes(`| \`${f.effective}\` |`), `row for ${f.spec.join('.')} names ${f.effective}`);
      assert.doesNotMatch(row, /\| — \|/, `row for ${f.spec.join('.')} gives a default`);
    }
    assert.match(reference, /\| `spec\.timeouts\.request` \| duration \| sidecar config `timeouts\.request` \(15s\) \|/);
    assert.match(reference, /\| `spec\.retries\.attempts` \| integer, 1 to 10 \| `3` \|/);
  });

  it('every field of the schema has a description', () => {
    const missing: string[] = [];
    const walk = (node: Record<string, unknown>, at: string) => {
      const properties = (node.properties ?? {}) as Record<string, Record<string, unknown>>;
      for (const [key, child] of Object.entries(properties)) {
        if (typeof child.description !== 'string' || child.description === '') missing.push(`${at}${key}`);
        walk(child, `${at}${key}.`);
        if (child.items) walk(child.items as Record<string, unknown>, `${at}${key}[].`);
      }
    };
    walk(PolicyDocumentSchema as unknown as Record<string, unknown>, '');
    assert.deepEqual(missing, []);
  });

  it('the checked-in JSON Schema works on its own: it accepts a policy and rejects an unknown key', () => {
    const validate = new Ajv({ strict: false }).compile(JSON.parse(readFileSync(JSON_SCHEMA_FILE, 'utf8')));
    const valid = parseAllDocuments(policy('p', 'payments', '  retries: { attempts: 2, statusCodes: [5xx] }\n'))[0]!.toJS();
    const typo = parseAllDocuments(policy('p', 'payments', '  retries: { atempts: 2 }\n'))[0]!.toJS();
    assert.equal(validate(valid), true);
    assert.equal(validate(typo), false);
  });
});
