// watchFiles: a change to a watched file (written in place, replaced by a rename, or a Kubernetes
// `..data` link swap) gives one call once the writes settle; other files in the folder give none.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { watchFiles } from '../../../sidecar/src/config/watch-files.ts';
import { within } from '../../helpers/wait.ts';

describe('watchFiles', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-mesh-watch-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'cert.pem');
  writeFileSync(file, 'one');

  const watching = (targets: Parameters<typeof watchFiles>[0]) => {
    let calls = 0;
    let wake: (() => void) | undefined;
    const watch = watchFiles(targets, { debounceMs: 20, onChange: () => { calls++; wake?.(); }, onError: (err) => assert.fail(err) });
    return {
      next: () => within(new Promise<void>((resolve) => { wake = resolve; }), 5000, 'no change reported'),
      calls: () => calls,
      close: () => watch.close(),
    };
  };

  it('reports a file replaced by a rename, once for several writes', async () => {
    const w = watching({ files: [file] });
    try {
      const changed = w.next();
      writeFileSync(`${file}.tmp`, 'two');
      renameSync(`${file}.tmp`, file);
      writeFileSync(file, 'three');
      await changed;
      assert.equal(w.calls(), 1, 'the writes settled into one call');
    } finally {
      w.close();
    }
  });

  it('ignores other files of the folder but not the ..data link swap; a watched folder reports any file', async () => {
    const w = watching({ files: [file] });
    const all = watching({ folders: [dir] });
    try {
      const anyFile = all.next();
      writeFileSync(path.join(dir, 'unrelated.txt'), 'x');
      await anyFile;
      const swap = w.next();
      writeFileSync(path.join(dir, '..data_tmp'), 'link');
      renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      await swap;
      assert.equal(w.calls(), 1, 'the unrelated file gave no call, the ..data swap one');
    } finally {
      w.close();
      all.close();
    }
  });
});
