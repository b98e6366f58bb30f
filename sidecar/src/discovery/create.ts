// The resolver a sidecar uses, from config `discovery.mode`.
import type { MeshConfig } from '../config/load.ts';
import { DnsResolver } from './dns.ts';
import { KubernetesResolver } from './kubernetes.ts';
import type { Resolver } from './resolver.ts';
import { StaticResolver } from './static.ts';
import type { DiscoveryLogger } from './table.ts';

/** Throws ConfigError when the mode cannot work here (kubernetes outside a pod without a kubeconfig). */
export function createResolver(config: Pick<MeshConfig, 'discovery' | 'namespace'>, logger?: DiscoveryLogger): Resolver {
  const { discovery } = config;
  switch (discovery.mode) {
    case 'dns':
      return new DnsResolver({ ...discovery.dns, ownNamespace: config.namespace, ...(logger ? { logger } : {}) });
    case 'kubernetes':
      return new KubernetesResolver({ ...discovery.kubernetes, ...(logger ? { logger } : {}) });
    default:
      return new StaticResolver(discovery.static, config.namespace);
  }
}
