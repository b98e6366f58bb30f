// Which endpoints may take a request when the policy defines subsets (canary, request colouring).
//
//   1. No subsets: every endpoint.
//   2. A header route whose headers all match (first match in policy order): that subset only.
//   3. Otherwise a weighted random split between the subsets, chosen once per request.
//
// Decisions (documented in the policy reference):
//   - Endpoints outside every subset get no traffic while subsets are defined: a pod with unexpected
//     labels is not silently put in service.
//   - An empty subset (no endpoint has its labels, or none of them is usable when the caller passes
//     only usable endpoints) gives its share to the non-empty subsets in proportion to their weights,
//     so a canary scaled to zero sheds its 10% to stable instead of failing 10% of calls.
//   - A header route to an empty subset falls back to that split too (`fallback: true`, for logs and
//     metrics): coloured requests are served by the other version rather than refused.
//   - A subset with weight 0 gets no split traffic but can still be reached by a header route (the
//     usual "dark canary"). When every non-empty subset has weight 0, they share equally.
//   - Nothing in any subset: an empty list, which the pipeline answers with NO_HEALTHY_ENDPOINT.
import type { Endpoint } from '../discovery/resolver.ts';
import type { Header } from '../mcp/codec.ts';
import type { HeaderRoutePolicy, SubsetPolicy } from '../policy/types.ts';
import { weightedChoice } from './balancer.ts';

export interface SubsetSelection {
  /** The chosen subset's name; undefined when the policy has no subsets or none has endpoints. */
  subset: string | undefined;
  endpoints: readonly Endpoint[];
  /** How it was chosen. */
  via: 'all' | 'header' | 'split';
  /** A header route matched, but its subset had no endpoints. */
  fallback: boolean;
}

export interface SubsetRules {
  subsets: readonly SubsetPolicy[];
  headerRoutes: readonly HeaderRoutePolicy[];
}

export function inSubset(endpoint: Endpoint, subset: SubsetPolicy): boolean {
  for (const [key, value] of Object.entries(subset.labels)) if (endpoint.labels[key] !== value) return false;
  return true;
}

/** All the route's headers are present with exactly these values (names compared case-insensitively). */
export function headersMatch(route: HeaderRoutePolicy, headers: readonly Header[]): boolean {
  for (const [name, value] of Object.entries(route.headers)) {
    const wanted = name.toLowerCase();
    if (!headers.some((h) => h.name.toLowerCase() === wanted && h.value === value)) return false;
  }
  return true;
}

/**
 * Choose the endpoints for one request. Pass the endpoints that may take calls now (ejected and
 * broken ones removed) so that an unusable subset sheds its share; `random` is uniform in [0, 1).
 */
export function selectSubset(endpoints: readonly Endpoint[], rules: SubsetRules, headers: readonly Header[], random: () => number = Math.random): SubsetSelection {
  if (rules.subsets.length === 0) return { subset: undefined, endpoints, via: 'all', fallback: false };

  const members = new Map<string, Endpoint[]>();
  for (const subset of rules.subsets) members.set(subset.name, endpoints.filter((e) => inSubset(e, subset)));

  const route = rules.headerRoutes.find((r) => headersMatch(r, headers));
  const routed = route ? members.get(route.subset) : undefined;
  if (route && routed && routed.length > 0) return { subset: route.subset, endpoints: routed, via: 'header', fallback: false };

  const fallback = route !== undefined;
  const nonEmpty = rules.subsets.filter((s) => members.get(s.name)!.length > 0);
  if (nonEmpty.length === 0) return { subset: undefined, endpoints: [], via: 'split', fallback };
  const chosen = weightedChoice(nonEmpty, (s) => Math.max(0, s.weight), random);
  return { subset: chosen.name, endpoints: members.get(chosen.name)!, via: 'split', fallback };
}
