// The resolver a sidecar uses, from config `discovery.mode`.
import type { MeshConfig } from '../config/load.ts';
import { DnsResolver } from './dns.ts';
import type { Resolver } from './resolver.ts';
import { StaticResolver } from './static.ts';
import type { DiscoveryLogger } from './table.ts';

/**
 * Throws (rejects with) ConfigError when the mode cannot work here (kubernetes outside a pod without
 * a kubeconfig). The Kubernetes client is loaded only in kubernetes mode: it is the heaviest module
 * the sidecar has (about 35 MB of a sidecar's resident memory, 80 MB imported alone) and the other
 * modes never use it.
 */
export async function createResolver(config: Pick<MeshConfig, 'discovery' | 'namespace'>, logger?: DiscoveryLogger): Promise<Resolver> {
  const { discovery } = config;
  switch (discovery.mode) {
    case 'dns':
      return new DnsResolver({ ...discovery.dns, ownNamespace: config.namespace, ...(logger ? { logger } : {}) });
    case 'kubernetes': {
      const { KubernetesResolver } = await import('./kubernetes.ts');
      return new KubernetesResolver({ ...discovery.kubernetes, ...(logger ? { logger } : {}) });
    }
    default:
      return new StaticResolver(discovery.static, config.namespace);
  }
}
