// Reading policy files: documents in a file, files in a folder, and how problems are reported.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fieldPath, formatProblem, parsePolicyText, PolicyError, policyFiles, readPolicySet } from '../../../sidecar/src/policy/load.ts';
import { documents, policy } from '../../helpers/policies.ts';

let dir: string;
before(() => { dir = mkdtempSync(path.join(tmpdir(), 'mesh-policy-load-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

describe('documents in a file', () => {
  it('reads every document between ---, skipping empty ones and comments (index counts documents as YAML does)', () => {
    const text = `# comments only before the first document\n---\n${documents(policy('a', 'payments'), '# nothing here\n', policy('b', 'orders', '  retries: { attempts: 2 }\n'))}---\n`;
    const { policies, problems } = parsePolicyText(text, 'p.yaml');
    assert.deepEqual(problems, []);
    assert.deepEqual(policies.map((p) => [p.name, p.index, p.spec.service]), [['a', 0, 'payments'], ['b', 2, 'orders']]);
    assert.deepEqual(policies[1]!.at(['spec', 'retries', 'attempts']), { line: 18, col: 24 });
  });

  it('an empty file holds no policy and no problem', () => {
    assert.deepEqual(parsePolicyText('', 'empty.yaml'), { policies: [], problems: [] });
  });

  it('reports the problems of every document, in file order, and keeps the valid ones', () => {
    const text = documents(policy('a', 'payments', '  retries: { attempts: 0 }\n'), policy('b', 'orders'), policy('c', 'Bad', '  retrys: {}\n'));
    const { policies, problems } = parsePolicyText(text, 'p.yaml');
    assert.deepEqual(policies.map((p) => p.name), ['b']);
    assert.deepEqual(problems.map(formatProblem), [
      'p.yaml:7:24: spec.retries.attempts: must be an integer from 1 to 10',
      'p.yaml:21:12: spec.service: must be a DNS label: lower-case letters, digits and "-", at most 63 characters',
      'p.yaml:22:3: spec.retrys: unknown key; did you mean retries?',
    ]);
  });

  it('a key nothing resembles lists the keys allowed there', () => {
    const { problems } = parsePolicyText(policy('a', 'payments', '  timeouts: { bananas: 1s }\n'), 'p.yaml');
    assert.equal(formatProblem(problems[0]!), 'p.yaml:7:15: spec.timeouts.bananas: unknown key; the keys allowed here are connect, perTry, request, streamIdle');
  });
});

describe('files and folders', () => {
  it('a folder means its *.yaml and *.yml files in name order: not subfolders, dot files or other files', () => {
    const folder = path.join(dir, 'set');
    mkdirSync(path.join(folder, '..data'), { recursive: true });
    for (const name of ['b.yaml', 'a.yml', '.hidden.yaml', 'notes.txt', '..data/a.yaml']) writeFileSync(path.join(folder, name), policy(name.replace(/\W/g, ''), 'payments'));
    const { files, problems } = policyFiles([folder, path.join(folder, 'b.yaml')]);
    assert.deepEqual(problems, []);
    assert.deepEqual(files, [path.join(folder, 'a.yml'), path.join(folder, 'b.yaml')], 'a file named twice is read once');
  });

  it('a path that does not exist is a problem without a position', () => {
    const missing = path.join(dir, 'nope.yaml');
    const set = readPolicySet([missing]);
    assert.deepEqual(set.problems.map(formatProblem), [`${missing}: cannot read: ENOENT`]);
  });

  it('readPolicySet keeps each file\'s text and the names of its valid policies', () => {
    const file = path.join(dir, 'two.yaml');
    const text = documents(policy('x', 'payments'), policy('y', 'orders'));
    writeFileSync(file, text);
    const set = readPolicySet([file]);
    assert.deepEqual(set.files, [{ file, text, policies: ['x', 'y'] }]);
  });
});

describe('messages', () => {
  it('PolicyError lists every problem, one per line', () => {
    const { problems } = parsePolicyText(documents(policy('a', 'payments', '  retries: { attempts: 0 }\n'), policy('b', 'Bad')), 'p.yaml');
    const error = new PolicyError(problems);
    assert.equal(error.message.split('\n').length, 2);
    assert.match(error.message, /^policy error: p\.yaml:7:24: spec\.retries\.attempts: /);
    assert.equal(error.problems, problems);
  });

  it('field paths put list indexes in brackets and quote keys that are not plain words', () => {
    const data = { spec: { subsets: [{ labels: { 'app.kubernetes.io/name': 'x' } }] } };
    assert.equal(fieldPath(['spec', 'subsets', '0', 'labels', 'app.kubernetes.io/name'], data), 'spec.subsets[0].labels["app.kubernetes.io/name"]');
  });
});
