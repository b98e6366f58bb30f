// PolicyStore with real files in a temp folder: start-up refuses a broken set; changes on disk are
// applied whole and at once; a broken change is rejected, counted, logged and kept for the dump,
// and the running policy stays. Tests wait on the store's own events, never on the clock.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { PolicyError } from '../../../sidecar/src/policy/load.ts';
import { PolicyStore, type PolicyLogger } from '../../../sidecar/src/policy/store.ts';
import { DEFAULTS, memoryLogger, nextChange, nextRejection, policy } from '../../helpers/policies.ts';

let root: string;
before(() => { root = mkdtempSync(path.join(tmpdir(), 'mesh-policy-store-')); });
after(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
/** A fresh folder holding `files` (name → text). */
function folderWith(files: Record<string, string>): string {
  const folder = path.join(root, `set-${++folders}`);
  mkdirSync(folder);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(folder, name), text);
  return folder;
}

const withTimeout = (request: string) => policy('payments', 'payments', `  timeouts:\n    request: ${request}\n`);
const GET = { method: 'GET', path: '/charge', headers: [] };
const deadline = (store: PolicyStore) => store.resolve('payments', 'default', GET).timeouts.overallMs;

const stores: PolicyStore[] = [];
after(() => { for (const store of stores) store.close(); });
function load(paths: string[], logger: PolicyLogger = memoryLogger(), options = {}): PolicyStore {
  const store = PolicyStore.load(paths, DEFAULTS, logger, options);
  stores.push(store);
  return store;
}

/** A store on a fresh folder whose p.yaml gives payments a 2 s deadline. */
function running(logger: PolicyLogger = memoryLogger(), options = {}): { folder: string; file: string; store: PolicyStore } {
  const folder = folderWith({ 'p.yaml': withTimeout('2s') });
  return { folder, file: path.join(folder, 'p.yaml'), store: load([folder], logger, options) };
}

describe('PolicyStore at start-up', () => {
  it('refuses an invalid set with a PolicyError listing every problem', () => {
    const folder = folderWith({ 'a.yaml': policy('a', 'payments', '  retries: { attempts: 0 }\n'), 'b.yaml': policy('b', 'Orders') });
    assert.throws(() => load([folder]), (err: unknown) => {
      assert.ok(err instanceof PolicyError);
      assert.deepEqual(err.problems.map((p) => `${path.basename(p.file)}:${p.at?.line}:${p.at?.col}: ${p.path}`), ['a.yaml:7:24: spec.retries.attempts', 'b.yaml:6:12: spec.service']);
      assert.equal(err.message.split('\n').length, 2);
      return true;
    });
  });

  it('loads a folder, resolves from it, and logs what it loaded', () => {
    const logger = memoryLogger();
    const folder = folderWith({ 'p.yaml': withTimeout('2s') });
    const store = load([folder], logger);
    assert.equal(deadline(store), 2000);
    assert.equal(store.generation, 1);
    assert.deepEqual(logger.entries.map((e) => [e.level, e.msg, e.obj.policies]), [['info', 'policies loaded', 1]]);
  });

  it('takes a pino logger', () => {
    const store = load([], pino({ level: 'silent' }));
    assert.equal(deadline(store), DEFAULTS.timeouts.requestMs);
  });
});

describe('PolicyStore hot reload', () => {
  it('applies a valid change from the next resolve', async () => {
    const logger = memoryLogger();
    const { file, store } = running(logger);
    const changed = nextChange(store);
    writeFileSync(file, withTimeout('5s'));
    assert.deepEqual(await changed, { generation: 2, files: [file] });
    assert.equal(deadline(store), 5000);
    assert.equal(logger.entries.at(-1)!.msg, 'policies reloaded');
  });

  it('rejects a broken edit: the old policy stays; the rejection is counted, logged and kept for the dump', async () => {
    const logger = memoryLogger();
    const { file, store } = running(logger);

    const rejected = nextRejection(store);
    writeFileSync(file, `${withTimeout('5s')}  retries: { attempts: 0 }\n`);
    const error = await rejected;
    const expected = [`${file}:9:24: spec.retries.attempts: must be an integer from 1 to 10`];
    assert.deepEqual(error.problems, expected);
    assert.equal(deadline(store), 2000, 'the running policy stays, the valid part of the edit too');
    assert.equal(store.reloadFailures, 1);
    assert.equal(store.lastError, error);
    const logged = logger.entries.at(-1)!;
    assert.equal(logged.level, 'error');
    assert.equal(logged.obj.code, 'POLICY_INVALID');
    assert.deepEqual(logged.obj.problems, expected);
    assert.deepEqual(store.dump().reload, { failures: 1, lastError: error });

    assert.equal(store.reload(), false, 'the same broken content again');
    assert.equal(store.reloadFailures, 1, 'counts once');

    const fixed = nextChange(store);
    writeFileSync(file, withTimeout('7s'));
    await fixed;
    assert.equal(deadline(store), 7000);
    assert.equal(store.reloadFailures, 1);
    assert.equal(store.dump().reload.lastError, error, 'kept after the fix, as history');
  });

  it('sees a file replaced by an atomic rename', async () => {
    const { file, store } = running();
    const changed = nextChange(store);
    const staged = path.join(root, `staged-${folders}.yaml`);
    writeFileSync(staged, withTimeout('3s'));
    renameSync(staged, file);
    await changed;
    assert.equal(deadline(store), 3000);
  });

  it('sees a Kubernetes ConfigMap update (the ..data symlink swapped)', async () => {
    // A ConfigMap volume: p.yaml → ..data/p.yaml, ..data → ..v1; an update writes ..v2 and renames a new link over ..data.
    const folder = folderWith({});
    mkdirSync(path.join(folder, '..v1'));
    writeFileSync(path.join(folder, '..v1', 'p.yaml'), withTimeout('2s'));
    symlinkSync('..v1', path.join(folder, '..data'));
    symlinkSync(path.join('..data', 'p.yaml'), path.join(folder, 'p.yaml'));
    const store = load([folder]);
    assert.equal(deadline(store), 2000);
    const changed = nextChange(store);
    mkdirSync(path.join(folder, '..v2'));
    writeFileSync(path.join(folder, '..v2', 'p.yaml'), withTimeout('4s'));
    symlinkSync('..v2', path.join(folder, '..data_tmp'));
    renameSync(path.join(folder, '..data_tmp'), path.join(folder, '..data'));
    await changed;
    assert.equal(deadline(store), 4000);
  });

  it('picks up a new file in a watched folder', async () => {
    const { folder, store } = running();
    const changed = nextChange(store);
    writeFileSync(path.join(folder, 'orders.yaml'), policy('orders', 'orders', '  retries: { attempts: 1 }\n'));
    assert.equal((await changed).files.length, 2);
    assert.equal(store.resolve('orders', 'default', GET).retries.attempts, 1);
  });

  it('watches a single file through its folder', async () => {
    const folder = folderWith({ 'p.yaml': withTimeout('2s') });
    const store = load([path.join(folder, 'p.yaml')]);
    const changed = nextChange(store);
    writeFileSync(path.join(folder, 'p.yaml'), withTimeout('6s'));
    await changed;
    assert.equal(deadline(store), 6000);
  });

  it('rejects a change that breaks the set as a whole (a second service-wide policy in another file)', async () => {
    const { folder, store } = running();
    const rejected = nextRejection(store);
    writeFileSync(path.join(folder, 'q.yaml'), policy('payments-2', 'payments', '  timeouts: { request: 9s }\n'));
    const error = await rejected;
    assert.match(error.problems[0]!, /q\.yaml:6:12: spec\.service: service payments .* already has a service-wide policy in .*p\.yaml:6:12/);
    assert.equal(deadline(store), 2000);
  });

  it('close() stops watching', async () => {
    const folder = folderWith({ 'p.yaml': withTimeout('2s') });
    // The closed store would reload at once (debounce 0); the witness only after 50 ms of quiet,
    // so by the witness's change the closed one would have changed too, had it still been watching.
    const closed = load([folder], memoryLogger(), { debounceMs: 0 });
    const witness = load([folder], memoryLogger(), { debounceMs: 50 });
    closed.close();
    const changed = nextChange(witness);
    writeFileSync(path.join(folder, 'p.yaml'), withTimeout('8s'));
    await changed;
    assert.equal(closed.generation, 1);
    assert.equal(deadline(closed), 2000);
  });
});

describe('PolicyStore.reload() and listeners', () => {
  it('reload() applies a change at once and says whether anything changed', () => {
    const { file, store } = running(memoryLogger(), { watch: false });
    const seen: number[] = [];
    store.onChange((c) => seen.push(c.generation));
    assert.equal(store.reload(), false, 'nothing changed');
    writeFileSync(file, withTimeout('3s'));
    assert.equal(store.reload(), true);
    assert.deepEqual(seen, [2]);
    assert.equal(deadline(store), 3000);
  });

  it('a listener that throws is logged and does not stop the others; off() removes one', () => {
    const logger = memoryLogger();
    const { file, store } = running(logger, { watch: false });
    const seen: string[] = [];
    store.onChange(() => { throw new Error('boom'); });
    const off = store.onChange(() => seen.push('removed'));
    store.onChange(() => seen.push('second'));
    off();
    writeFileSync(file, withTimeout('3s'));
    store.reload();
    assert.deepEqual(seen, ['second']);
    assert.ok(logger.entries.some((e) => e.level === 'error' && e.msg === 'policy listener failed'));
  });

  it('dump() is plain JSON: files, defaults, services with sources, reload state', () => {
    const { folder, file, store } = running(memoryLogger(), { watch: false });
    const dump = store.dump();
    assert.deepEqual(JSON.parse(JSON.stringify(dump)), dump);
    assert.deepEqual(dump.files, [{ file, policies: ['payments'] }]);
    assert.deepEqual(dump.paths, [folder]);
    assert.equal(dump.defaults.policy.timeouts.overallMs, DEFAULTS.timeouts.requestMs);
    assert.equal(dump.services[0]!.effective.policy.timeouts.overallMs, 2000);
    assert.equal(dump.services[0]!.effective.sources['timeouts.overallMs'], `${file}:8:14`);
    assert.deepEqual(dump.reload, { failures: 0, lastError: null });
    assert.match(dump.precedence, /exact path > longer path/);
  });
});
