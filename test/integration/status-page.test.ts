// The status page (admin GET /) with its script running in a DOM: happy-dom (an npm devDependency,
// so `npm ci` brings it and no test installs a browser) loads the calling sidecar's page over HTTP
// while traffic runs through two sidecars to an app. The page's own script fetches /status.json and
// builds the DOM, which must show the called service, a non-zero request rate, latency percentiles,
// the endpoint, its link and breaker, and the sidecar's readiness. What the page looks like is not a
// test's business: a screenshot is a manual step (README, "Testing").
//
//   traffic (this test) ─HTTP─▶ orders sidecar ══MCP══▶ hello sidecar ─HTTP─▶ app
//                                    ▲
//                       happy-dom ───┘ admin GET /  (its script polls /status.json)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Browser } from 'happy-dom';
import { Agent } from 'undici';
import { startTestApp, type TestApp } from '../helpers/apps.ts';
import { adminJson, callService } from '../helpers/fleet.ts';
import { SidecarProcess, sidecarConfig } from '../helpers/sidecar-process.ts';
import { until } from '../helpers/wait.ts';

interface StatusDoc {
  outbound: { service: string; live: { requestsPerSecond: number; latencyMs: { p50: number } | null; perSecond: number[] } | null; endpoints: { address: string; live: unknown }[] }[];
}

/** Calls through the caller from a few workers until stopped, or for at most `maxMs` (bounded either way). */
function startTraffic(caller: SidecarProcess, service: string, maxMs: number): { stop(): Promise<{ calls: number; failures: number }> } {
  const agent = new Agent({ connections: 8 });
  const deadline = performance.now() + maxMs;
  let stopped = false;
  let calls = 0;
  let failures = 0;
  // Mostly quick calls, some a few ms long, some answered 404 by the app: percentiles and status classes have something to show.
  const paths = ['/delay/2', '/echo', '/delay/5', '/echo', '/delay/1', '/status/404', '/delay/12', '/echo'];
  const worker = async (w: number) => {
    for (let i = w; !stopped && performance.now() < deadline; i++) {
      try {
        const outcome = await callService(caller, service, paths[i % paths.length]!, { dispatcher: agent });
        calls++;
        if (outcome.status >= 500) failures++;
      } catch {
        failures++;
      }
    }
  };
  const workers = Promise.all([0, 1, 2, 3].map(worker));
  return {
    async stop() {
      stopped = true;
      await workers;
      await agent.close();
      return { calls, failures };
    },
  };
}

/** The text of the first element with data-field="FIELD" after `from` in `html`. */
function field(html: string, name: string, from = 0): string | undefined {
  const match = new RegExp(`data-field="${name}"[^>]*>([^<]*)<`).exec(html.slice(from));
  return match?.[1];
}

describe('status page (admin GET /) with its script running in happy-dom', { timeout: 120_000 }, () => {
  let app: TestApp | undefined;
  let callee: SidecarProcess | undefined;
  let caller: SidecarProcess | undefined;
  let traffic: ReturnType<typeof startTraffic> | undefined;
  // The page is our own, served by our own sidecar on loopback: its script may run in this process.
  const browser = new Browser({ settings: { enableJavaScriptEvaluation: true, suppressInsecureJavaScriptEnvironmentWarning: true } });

  before(async () => {
    app = await startTestApp({ name: 'hello-0' });
    callee = await SidecarProcess.start({ config: sidecarConfig({ service: 'hello', appPort: app.port }), name: 'hello' });
    caller = await SidecarProcess.start({ config: sidecarConfig({ service: 'orders', appPort: 1, peers: { hello: [callee.inboundAddress] } }), name: 'orders' });
    await caller.waitForLog((l) => l.msg === 'link ready' && l.peer === callee!.inboundAddress);
    traffic = startTraffic(caller, 'hello', 60_000);
  });

  after(async () => {
    await browser.close();
    const done = await traffic?.stop();
    if (done) assert.ok(done.calls > 0, 'traffic went through');
    await caller?.stop();
    await callee?.stop();
    await app?.close();
  });

  test('shows the called service, its request rate, latency percentiles and endpoint', async () => {
    const admin = `http://127.0.0.1:${caller!.ports.admin}/`;
    // The live numbers exist before the page looks (bounded polling of the admin API, no sleep).
    await until(async () => {
      const doc = await adminJson<StatusDoc>(caller!, '/status.json');
      const hello = doc.outbound.find((s) => s.service === 'hello.default');
      // Three whole seconds of traffic, so the page's per-second chart has a shape to draw.
      return (hello?.live?.requestsPerSecond ?? 0) > 0 && hello?.live?.latencyMs != null && (hello.live.perSecond.slice(-3).every((n) => n > 0));
    }, { ms: 20_000, message: 'the status document never showed three seconds of traffic to hello.default' });

    const page = browser.newPage();
    await page.goto(admin);
    // The script renders once its first fetch of status.json is answered, then polls every second:
    // the DOM is read as soon as the endpoint row is there.
    let dom = '';
    await until(() => {
      dom = page.mainFrame.document.documentElement.outerHTML;
      return dom.includes(`data-endpoint="${callee!.inboundAddress}"`) && /id="readiness"[^>]*>ready</.test(dom);
    }, { ms: 10_000, message: 'the page\'s script never rendered the endpoint row and readiness' });
    const at = dom.indexOf('data-service="hello.default"');
    assert.ok(at >= 0, `the page has a section for hello.default\n${dom.slice(0, 3000)}`);
    assert.equal(field(dom, 'service', at), 'hello.default');
    const rps = field(dom, 'rps', at);
    assert.ok(rps !== undefined && rps !== '—' && rps !== '0' && Number.parseFloat(rps.replace('<', '')) > 0, `a non-zero request rate is shown (${rps})`);
    for (const p of ['p50', 'p90', 'p99']) {
      assert.match(field(dom, p, at) ?? '', /^\d+(\.\d+)? (ms|s)$/, `${p} is a latency`);
    }
    assert.ok(dom.includes(`data-endpoint="${callee!.inboundAddress}"`), 'the endpoint row is there');
    assert.equal(field(dom, 'address', dom.indexOf(`data-endpoint="${callee!.inboundAddress}"`)), callee!.inboundAddress);
    assert.match(dom, /data-field="link"[^>]*>ready</, 'the link is shown ready');
    assert.match(dom, /data-field="breaker"[^>]*>closed</, 'the endpoint breaker is shown closed');
    assert.match(dom, /id="readiness"[^>]*>ready</, 'the sidecar is shown ready');
    assert.ok(dom.includes('<svg'), 'the per-second chart was drawn');
    await page.close();
  });
});
