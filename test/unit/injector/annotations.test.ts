import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ANNOTATIONS, parseAnnotations, quantityValue } from '../../../sidecar/src/injector/annotations.ts';

describe('injector annotations', () => {
  test('defaults when nothing is annotated', () => {
    const result = parseAnnotations(undefined);
    assert.deepEqual(result, {
      ok: true,
      settings: {
        inject: undefined, service: undefined, appPort: undefined, policy: undefined, proxyEnv: true, mode: undefined, tlsSecret: undefined,
        resources: { cpuRequest: undefined, memoryRequest: undefined, cpuLimit: undefined, memoryLimit: undefined },
      },
    });
  });

  test('every annotation read', () => {
    const result = parseAnnotations({
      [ANNOTATIONS.inject]: 'true', [ANNOTATIONS.service]: 'payments', [ANNOTATIONS.appPort]: '8080', [ANNOTATIONS.policy]: 'payments.policies',
      [ANNOTATIONS.proxyEnv]: 'false', [ANNOTATIONS.sidecarMode]: 'container', [ANNOTATIONS.tlsSecret]: 'mcp-mesh-tls-payments',
      [ANNOTATIONS.cpuRequest]: '0.1', [ANNOTATIONS.memoryRequest]: '1e8', [ANNOTATIONS.cpuLimit]: '500m', [ANNOTATIONS.memoryLimit]: '1Gi',
    });
    assert.ok(result.ok);
    assert.deepEqual(result.settings, {
      inject: true, service: 'payments', appPort: 8080, policy: 'payments.policies', proxyEnv: false, mode: 'container', tlsSecret: 'mcp-mesh-tls-payments',
      resources: { cpuRequest: '0.1', memoryRequest: '1e8', cpuLimit: '500m', memoryLimit: '1Gi' },
    });
  });

  const bad: [key: string, value: string, message: string][] = [
    [ANNOTATIONS.appPort, 'http', 'mcp-mesh.io/app-port: "http" must be a port number 1–65535'],
    [ANNOTATIONS.appPort, '0', 'mcp-mesh.io/app-port: "0" must be a port number 1–65535'],
    [ANNOTATIONS.appPort, '65536', 'mcp-mesh.io/app-port: "65536" must be a port number 1–65535'],
    [ANNOTATIONS.appPort, ' 80', 'mcp-mesh.io/app-port: " 80" must be a port number 1–65535'],
    [ANNOTATIONS.inject, 'yes', 'mcp-mesh.io/inject: "yes" must be "true" or "false"'],
    [ANNOTATIONS.proxyEnv, 'off', 'mcp-mesh.io/proxy-env: "off" must be "true" or "false"'],
    [ANNOTATIONS.sidecarMode, 'sidecar', 'mcp-mesh.io/sidecar-mode: "sidecar" must be "native" or "container"'],
    [ANNOTATIONS.service, 'Payments_API', 'mcp-mesh.io/service: "Payments_API" must be a service name: at most 63 lower-case letters, digits and "-", starting and ending with a letter or digit'],
    [ANNOTATIONS.policy, 'My Policies', 'mcp-mesh.io/policy: "My Policies" must be the name of a ConfigMap in the pod\'s namespace'],
    [ANNOTATIONS.tlsSecret, '-tls', 'mcp-mesh.io/tls-secret: "-tls" must be the name of a Secret in the pod\'s namespace'],
    [ANNOTATIONS.cpuLimit, 'lots', 'mcp-mesh.io/proxy-cpu-limit: "lots" must be a Kubernetes quantity (e.g. 100m or 0.5)'],
    [ANNOTATIONS.memoryRequest, '-64Mi', 'mcp-mesh.io/proxy-memory-request: "-64Mi" must be a Kubernetes quantity (e.g. 64Mi or 1Gi)'],
    [ANNOTATIONS.memoryRequest, '64MB', 'mcp-mesh.io/proxy-memory-request: "64MB" must be a Kubernetes quantity (e.g. 64Mi or 1Gi)'],
  ];
  for (const [key, value, message] of bad) {
    test(`refused: ${key}: ${JSON.stringify(value)}`, () => {
      assert.deepEqual(parseAnnotations({ [key]: value }), { ok: false, problems: [message] });
    });
  }

  test('a request above its limit is refused, naming both annotations', () => {
    assert.deepEqual(parseAnnotations({ [ANNOTATIONS.memoryRequest]: '1Gi', [ANNOTATIONS.memoryLimit]: '512Mi' }), {
      ok: false,
      problems: ['mcp-mesh.io/proxy-memory-request: "1Gi" must not be more than mcp-mesh.io/proxy-memory-limit ("512Mi")'],
    });
  });

  test('every problem is reported at once', () => {
    const result = parseAnnotations({ [ANNOTATIONS.appPort]: 'http', [ANNOTATIONS.sidecarMode]: 'x' });
    assert.equal(result.ok, false);
    assert.equal(!result.ok && result.problems.length, 2);
  });

  test('quantities', () => {
    assert.equal(quantityValue('100m'), 0.1);
    assert.equal(quantityValue('64Mi'), 64 * 2 ** 20);
    assert.equal(quantityValue('1G'), 1e9);
    assert.equal(quantityValue('1e3'), 1000);
    assert.equal(quantityValue('.5'), 0.5);
    assert.equal(quantityValue('1.5Gi'), 1.5 * 2 ** 30);
    assert.equal(quantityValue('64MB'), undefined);
    assert.equal(quantityValue(''), undefined);
  });
});
