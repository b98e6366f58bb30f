// Consistent hashing on a ring, with bounded loads.
//
// Ring: every endpoint puts `virtualNodes × weight` points on a 32-bit circle; a request's key is
// hashed onto the circle and the first point clockwise names its endpoint. Rules that keep keys where
// they are:
//   - The number of points of an endpoint depends on that endpoint alone (its address and weight),
//     never on the rest of the set. A ring of a fixed total size, divided among the endpoints, moves
//     keys between endpoints that did not change whenever one joins or leaves (envoy#22558,
//     istio#41814); here, adding or removing one endpoint moves only the keys it gains or loses.
//   - Points are xxHash32(address bytes ‖ point number as 4 bytes little-endian); equal positions
//     are ordered by address. The ring is therefore a function of the set of (address, weight)
//     pairs only, so every sidecar that sees the same endpoints sends a key to the same one, and the
//     order in which candidates arrive does not matter.
//   - The ring is rebuilt whenever the candidate set changes (scale-up included, istio#60312):
//     rings are cached by set, and a pick with the same set as the last one costs a membership check.
//
// Bounded load (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded Loads",
// arXiv:1608.01350): with m calls in flight over the ring's endpoints, an endpoint of weight w (of
// a total W) may hold at most ceil(c × (m + 1) × w / W) of them, counting the new one. An endpoint
// at its bound is passed over and the walk goes on clockwise to the next endpoint, so one hot key
// overflows to the same neighbours in the same order every time. c = boundedLoadFactor ≥ 1; with
// no call in flight every key goes to its owner, and two sidecars agree as long as neither has an
// endpoint at its bound. In-flight counts are this sidecar's own (onStart/onEnd).
//
// Exclusions (endpoints a call already tried) are honoured only when given, like the walk past a
// full endpoint: under affinity the pipeline passes none, so a retry goes back to the owner.
//
// No key (no hash source yielded a value): least request by power of two choices, as LeastRequest,
// so unkeyed calls still spread by load and weight instead of piling onto one point of the ring.
import type { Endpoint } from '../discovery/resolver.ts';
import type { ConsistentHashSettings } from '../policy/types.ts';
import type { BalancerOptions, PickOptions } from './balancer.ts';
import { LeastRequest } from './least-request.ts';
import { xxhash32, xxhash32String } from './xxhash32.ts';

/**
 * Most points one endpoint may put on the ring, whatever its weight, to bound a ring's build time
 * and memory: weights up to 128 are honoured exactly at the default 2048 virtual nodes. With weights
 * in the hundreds, lower virtualNodes.
 */
export const MAX_POINTS_PER_ENDPOINT = 262_144;

/**
 * Rings kept for candidate sets seen recently (subsets, ejections and breakers change the set): at
 * most this many, holding at most CACHED_POINTS points between them (8 bytes each); the ring in use
 * is always kept.
 */
const CACHED_RINGS = 8;
const CACHED_POINTS = 1 << 20;

/**
 * Ring positions and owners are sorted together as one float: position × 2^21 + owner index, exact
 * below 2^53. Sorting a Float64Array is fast and needs no comparator; the low part breaks ties.
 */
const OWNER_SPAN = 2 ** 21;

interface Ring {
  /** The addresses of the endpoints on the ring, in code-unit order. */
  readonly addresses: readonly string[];
  /** Their weights as used here (all 1 when none was positive). */
  readonly weights: Float64Array;
  readonly totalWeight: number;
  /** Point positions, ascending, and the endpoint index of each point. */
  readonly positions: Uint32Array;
  readonly owners: Uint32Array;
  /** The candidate set it was built from (address → weight), to recognise that set again. */
  readonly members: ReadonlyMap<string, number>;
  /** The length of the candidate list it was built from. */
  readonly listed: number;
  readonly signature: string;
}

/** A LeastRequest that places calls with a hash key on the ring; its in-flight counts feed the bound. */
export class ConsistentHash extends LeastRequest {
  readonly #virtualNodes: number;
  readonly #factor: number;
  /** By signature, least recently used first. */
  readonly #rings = new Map<string, Ring>();
  #last: Ring | undefined;

  constructor(settings: Pick<ConsistentHashSettings, 'virtualNodes' | 'boundedLoadFactor'>, options: BalancerOptions = {}) {
    super(options);
    this.#virtualNodes = settings.virtualNodes;
    this.#factor = settings.boundedLoadFactor;
  }

  override pick(candidates: readonly Endpoint[], options?: PickOptions): Endpoint | undefined {
    if (!options?.hashKey || candidates.length === 0) return super.pick(candidates, options);
    const ring = this.#ringOf(candidates);
    const start = pointAt(ring.positions, xxhash32String(options.hashKey));
    const address = ring.addresses[this.#choose(ring, start, options.exclude)];
    // The caller's own object (labels and all): a cached ring only knows addresses and weights.
    return candidates.find((e) => e.address === address);
  }

  override retain(addresses: ReadonlySet<string>): void {
    super.retain(addresses);
    for (const [signature, ring] of this.#rings) {
      if ([...ring.members.keys()].some((a) => !addresses.has(a))) this.#rings.delete(signature);
    }
    if (this.#last && !this.#rings.has(this.#last.signature)) this.#last = undefined;
  }

  /** The endpoint index for a key whose walk starts at point `start`. */
  #choose(ring: Ring, start: number, exclude: ReadonlySet<string> | undefined): number {
    const { addresses, weights } = ring;
    let inFlight = 0;
    for (const address of addresses) inFlight += this.inFlight(address);
    const share = (this.#factor * (inFlight + 1)) / ring.totalWeight;
    // The epsilon keeps float error (1.1 × 10 = 11.000000000000002) from raising a bound by one.
    const underBound = (i: number) => this.inFlight(addresses[i]!) + 1 <= Math.ceil(share * weights[i]! - 1e-9);
    if (!exclude || exclude.size === 0) return walk(ring, start, underBound) ?? ring.owners[start]!;
    const untried = (i: number) => !exclude.has(addresses[i]!);
    // As eligible(): a rule is dropped only when nothing meets it. Untried beats under the bound,
    // because going back to an endpoint that just failed is worse than loading one a bit more.
    return walk(ring, start, (i) => untried(i) && underBound(i)) ?? walk(ring, start, untried) ?? walk(ring, start, underBound) ?? ring.owners[start]!;
  }

  /** The ring of this candidate set: the last one used, a cached one, or a new one. */
  #ringOf(candidates: readonly Endpoint[]): Ring {
    if (this.#last && sameSet(this.#last, candidates)) return this.#last;
    const members = membersOf(candidates);
    const signature = [...members].map(([address, weight]) => `${address} ${weight}`).sort().join('\n');
    let ring = this.#rings.get(signature);
    if (ring) this.#rings.delete(signature); // re-inserted below as the most recently used
    else ring = buildRing(members, candidates.length, signature, this.#virtualNodes);
    this.#rings.set(signature, ring);
    let points = 0;
    for (const cached of this.#rings.values()) points += cached.positions.length;
    for (const [oldest, cached] of this.#rings) {
      if (cached === ring || (this.#rings.size <= CACHED_RINGS && points <= CACHED_POINTS)) break;
      this.#rings.delete(oldest);
      points -= cached.positions.length;
    }
    this.#last = ring;
    return ring;
  }
}

/** Index of the first point at or after `hash`, wrapping round to 0. */
function pointAt(positions: Uint32Array, hash: number): number {
  let low = 0;
  let high = positions.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (positions[mid]! < hash) low = mid + 1;
    else high = mid;
  }
  return low === positions.length ? 0 : low;
}

/** The first endpoint clockwise from point `start` that `accept`s, or undefined when none does. */
function walk(ring: Ring, start: number, accept: (index: number) => boolean): number | undefined {
  const { owners } = ring;
  const first = owners[start]!;
  if (accept(first)) return first;
  // Seeing all n endpoints takes about n·ln n points whatever the number of points per endpoint.
  const seen = new Uint8Array(ring.addresses.length);
  seen[first] = 1;
  let unseen = ring.addresses.length - 1;
  for (let i = (start + 1) % owners.length; unseen > 0; i = (i + 1) % owners.length) {
    const owner = owners[i]!;
    if (seen[owner]) continue;
    if (accept(owner)) return owner;
    seen[owner] = 1;
    unseen--;
  }
  return undefined;
}

/** Address → weight; an address listed twice counts once, with its larger weight. */
function membersOf(candidates: readonly Endpoint[]): Map<string, number> {
  const members = new Map<string, number>();
  for (const e of candidates) members.set(e.address, Math.max(members.get(e.address) ?? -Infinity, e.weight));
  return members;
}

function sameSet(ring: Ring, candidates: readonly Endpoint[]): boolean {
  if (candidates.length !== ring.listed) return false;
  for (const e of candidates) if (ring.members.get(e.address) !== e.weight) return false;
  return true;
}

function buildRing(members: Map<string, number>, listed: number, signature: string, virtualNodes: number): Ring {
  // Who is on the ring follows eligible(): weight 0 drains an endpoint, unless no weight is positive.
  let onRing = [...members].filter(([, weight]) => weight > 0);
  if (onRing.length === 0) onRing = [...members].map(([address]) => [address, 1]);
  onRing.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)); // code-unit order: the same on every machine

  const counts = onRing.map(([, weight]) => Math.min(MAX_POINTS_PER_ENDPOINT, Math.max(1, Math.round(virtualNodes * weight))));
  const keyed = new Float64Array(counts.reduce((sum, n) => sum + n, 0));
  const encoder = new TextEncoder();
  let k = 0;
  for (const [owner, [address]] of onRing.entries()) {
    const bytes = new Uint8Array(address.length * 3 + 4);
    const { written } = encoder.encodeInto(address, bytes);
    const point = new DataView(bytes.buffer, written, 4);
    for (let i = 0; i < counts[owner]!; i++) {
      point.setUint32(0, i, true);
      keyed[k++] = xxhash32(bytes, written + 4) * OWNER_SPAN + owner;
    }
  }
  keyed.sort();
  const positions = new Uint32Array(keyed.length);
  const owners = new Uint32Array(keyed.length);
  for (let i = 0; i < keyed.length; i++) {
    owners[i] = keyed[i]! % OWNER_SPAN;
    positions[i] = (keyed[i]! - owners[i]!) / OWNER_SPAN;
  }
  const weights = Float64Array.from(onRing, ([, weight]) => weight);
  return {
    addresses: onRing.map(([address]) => address),
    weights,
    totalWeight: weights.reduce((sum, w) => sum + w, 0),
    positions,
    owners,
    members,
    listed,
    signature,
  };
}
