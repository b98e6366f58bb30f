// npm run policy:schema — write what is generated from the policy schema: the JSON Schema under
// policies/schema/ and the field tables of docs/policies.md. Run it after changing schema.ts or an
// example; test/unit/policy/reference.test.ts fails until the checked-in copies match.
import { readFileSync, writeFileSync } from 'node:fs';
import { JSON_SCHEMA_FILE, policyJsonSchema, REFERENCE_FILE, withReference } from './reference.ts';

writeFileSync(JSON_SCHEMA_FILE, policyJsonSchema());
writeFileSync(REFERENCE_FILE, withReference(readFileSync(REFERENCE_FILE, 'utf8')));
process.stdout.write(`wrote ${JSON_SCHEMA_FILE}\nwrote ${REFERENCE_FILE}\n`);
