// Watching files that are replaced rather than edited in place. Folders are watched, not files: an
// editor's atomic rename, or Kubernetes swapping the `..data` link of a mounted ConfigMap or Secret,
// gives the file a new inode that a watch on the old one would never see. A change is reported once
// the writes have settled (several files, or one written in several steps, give one call).
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';

export interface WatchOptions {
  /** How long to wait after the last event before calling onChange. */
  debounceMs: number;
  onChange: () => void;
  /** A folder's watch failed: changes there are not seen from now on. */
  onError: (err: Error, folder: string) => void;
}

export interface FileWatch {
  close(): void;
}

/**
 * Call `onChange` when one of `files`, or anything in one of `folders`, changes. Names starting with
 * `..` count for files too: they are the links Kubernetes swaps under a mounted volume.
 */
export function watchFiles(targets: { files?: readonly string[]; folders?: readonly string[] }, options: WatchOptions): FileWatch {
  const names = new Map<string, Set<string> | 'all'>();
  for (const folder of targets.folders ?? []) names.set(path.resolve(folder), 'all');
  for (const file of targets.files ?? []) {
    const absolute = path.resolve(file);
    const folder = path.dirname(absolute);
    const known = names.get(folder);
    if (known !== 'all') names.set(folder, (known ?? new Set()).add(path.basename(absolute)));
  }
  let timer: NodeJS.Timeout | undefined;
  const watchers: FSWatcher[] = [];
  for (const [folder, watched] of names) {
    const watcher = watch(folder, (_event, name) => {
      if (watched !== 'all' && name !== null && !watched.has(name) && !name.startsWith('..')) return;
      clearTimeout(timer);
      timer = setTimeout(options.onChange, options.debounceMs);
      timer.unref();
    });
    watcher.on('error', (err) => options.onError(err, folder));
    watcher.unref();
    watchers.push(watcher);
  }
  return {
    close: () => {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}
