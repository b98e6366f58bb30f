// A stable key for a group of policy settings, so that runtime state (a breaker, a retry budget, a
// balancer) is shared by every route with the same settings and kept apart for a route with its own.
// Policies are frozen and resolved once per reload, so the key is worked out once per object.
const keys = new WeakMap<object, string>();

export function settingsKey(settings: object): string {
  let key = keys.get(settings);
  if (key === undefined) {
    key = JSON.stringify(settings);
    keys.set(settings, key);
  }
  return key;
}
