import type { LoadBalancerSettings } from '../policy/types.ts';
import type { Balancer, BalancerOptions } from './balancer.ts';
import { ConsistentHash } from './consistent-hash.ts';
import { LeastRequest } from './least-request.ts';
import { PeakEwma } from './p2c-ewma.ts';
import { RoundRobin } from './round-robin.ts';

/** A balancer for one service, per its policy. Build a new one when `settings.policy` changes. */
export function createBalancer(settings: LoadBalancerSettings, options: BalancerOptions = {}): Balancer {
  switch (settings.policy) {
    case 'round-robin': return new RoundRobin();
    case 'least-request': return new LeastRequest(options);
    case 'p2c-ewma': return new PeakEwma(settings, options);
    case 'consistent-hash': return new ConsistentHash(settings.consistentHash, options);
  }
}
