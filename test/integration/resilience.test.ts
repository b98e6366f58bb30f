// Resilience on real processes: retries around a replica that dies mid-load, retries within their
// budget around a flaky replica, the service circuit breaker (open, fast refusal, half-open, closed),
// the concurrency limit, and which methods are retried.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { HeldRequest, TestApp } from '../helpers/apps.ts';
import { adminJson, useFleet, type CallOutcome, type Fleet } from '../helpers/fleet.ts';
import { condition, runLoad } from '../helpers/load.ts';
import { policy } from '../helpers/policies.ts';
import type { LogLine } from '../helpers/sidecar-process.ts';
import { until, within } from '../helpers/wait.ts';

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

describe('a replica killed during load', { timeout: 60_000 }, () => {
  const started = useFleet({ service: 'catalog', replicas: 3, connections: 16 });

  test('2,000 GETs, one of 3 replicas SIGKILLed mid-load with a call in flight on it: zero failed calls (default policy)', async () => {
    const fleet = started();
    const victim = fleet.replicas[1]!;
    // The victim's app holds one call, so a call is certainly in flight on its link when it dies.
    victim.app.behaviour.hold = 1;
    const heldArrived = victim.app.nextHeld();
    let ok = 0;
    const progress = condition(() => ok >= 300);
    const load = runLoad<CallOutcome>({
      total: 2000, concurrency: 16, timeLimitMs: 30_000,
      call: (i) => fleet.call(`/work/${i}`),
      onResult: (outcome) => { if (outcome.status === 200) ok++; progress.poke(); },
    });
    const held = await within(heldArrived, 10_000, 'the victim replica never got a call');
    await within(progress.met, 10_000, 'the load did not get going');
    const linkDown = fleet.caller.mark();
    victim.sidecar.signal('SIGKILL');
    assert.equal((await victim.sidecar.exited).signal, 'SIGKILL');
    const okAtKill = ok;
    await fleet.caller.waitForLog((l) => l.msg.startsWith('link down') && l.peer === victim.sidecar.inboundAddress, { since: linkDown });
    await within(held.aborted, 5000, 'the held call was not cut when its sidecar died');
    const { results, elapsedMs } = await load;

    assert.equal(results.length, 2000, `all calls made within the time limit (${results.length} in ${Math.round(elapsedMs)} ms)`);
    const failed = results.filter((r) => r.status !== 200);
    assert.deepEqual(failed.map((r) => `${r.status} ${r.code}`), [], 'no call failed at the client');
    assert.ok(okAtKill < 2000 - 500, `the kill came mid-load (${okAtKill} calls done before it)`);
    const retried = results.filter((r) => r.attempts > 1);
    assert.ok(retried.length >= 1, 'the call in flight on the killed replica was retried');
    for (const r of retried) assert.notEqual(r.replica, victim.app.name, 'a retry went to another replica');
    const [a, , c] = fleet.hits();
    console.log(`kill under load: ${results.length} calls in ${Math.round(elapsedMs)} ms, ${okAtKill} done before the kill, `
      + `${retried.length} retried, attempts max ${Math.max(...results.map((r) => r.attempts))}, hits per replica ${fleet.hits().join('/')}`);
    assert.ok(a! + c! >= 2000 - okAtKill, 'the survivors took the calls after the kill');
  });
});

interface Budget { ratio: number; minPerSecond: number; windowSeconds: number }

/** What a budget allows over one window: ratio × calls + minPerSecond × window. */
function budgetAllows(budget: Budget, calls: number): number {
  return Math.floor(budget.ratio * calls + budget.minPerSecond * budget.windowSeconds);
}

/**
 * The retry budget's own count (admin /endpoints): every call and retry of the load still in its
 * window. So the load fitted in one window and one window's allowance is the bound, told by the
 * sidecar instead of a clock; the window is long enough (30 s) for a slow machine.
 */
async function assertOneBudgetWindow(fleet: Fleet, service: string, counted: { calls: number; retries: number }): Promise<void> {
  const view = await adminJson<{ services: Record<string, { retryBudgets: { calls: number; retries: number }[] }> }>(fleet.caller, '/endpoints');
  assert.deepEqual(view.services[`${service}.default`]!.retryBudgets, [counted], 'the whole load is in one budget window');
}

/**
 * Policy files retrying 503s of `service` within `budget`. Ejection and breakers are off, so a failing
 * replica keeps its share and every one of its 503s reaches the retry logic.
 */
function retry503Policy(service: string, budget: Budget, retryLines: string[]): Record<string, string> {
  return {
    [`${service}.yaml`]: policy(service, service, [
      '  retries:',
      '    attempts: 3',
      ...retryLines.map((line) => `    ${line}`),
      `    budget: { ratio: ${budget.ratio}, minPerSecond: ${budget.minPerSecond}, window: ${budget.windowSeconds}s }`,
      '  outlierDetection: { enabled: false }',
      '  circuitBreaker: { enabled: false }',
      '',
    ].join('\n')),
  };
}

describe('a replica failing half its calls with 503', { timeout: 60_000 }, () => {
  const BUDGET = { ratio: 0.2, minPerSecond: 3, windowSeconds: 30 };
  const started = useFleet({ service: 'inventory', replicas: 3, policies: retry503Policy('inventory', BUDGET, ['retryOn: [connect-failure, refused-stream, reset, unavailable]']) });

  test('1,000 GETs: ≥ 99.9% succeed, retries counted at the apps stay within ratio × calls + minPerSecond × window', async () => {
    const fleet = started();
    fleet.replicas[0]!.app.behaviour.failing = 'every-other';
    const calls = 1000;
    const { results, elapsedMs } = await runLoad({ total: calls, concurrency: 16, timeLimitMs: 20_000, call: (i) => fleet.call(`/work/${i}`) });
    assert.equal(results.length, calls, 'all calls made within the time limit');

    const succeeded = results.filter((r) => r.status === 200).length;
    const arrivals = sum(fleet.hits());
    const retries = arrivals - calls;
    const allowed = budgetAllows(BUDGET, calls);
    const flakyFailures = Math.floor(fleet.replicas[0]!.app.count('/work') / 2);
    console.log(`flaky replica: ${succeeded}/${calls} succeeded in ${Math.round(elapsedMs)} ms; ${arrivals} arrivals at the apps `
      + `(${fleet.hits().join('/')}), ${retries} retries, budget allows ${allowed}; the flaky replica answered 503 ${flakyFailures} times`);
    assert.ok(succeeded / calls >= 0.999, `success ${succeeded}/${calls}`);
    assert.ok(flakyFailures >= 50, `the flaky replica got its share and failed often (${flakyFailures} times)`);
    assert.equal(retries, flakyFailures, 'every 503 was retried once, and nothing else was');
    await assertOneBudgetWindow(fleet, 'inventory', { calls, retries });
    assert.ok(retries <= allowed, `${retries} retries ≤ budget ${allowed}`);
    assert.equal(sum(results.map((r) => r.attempts - 1)), retries, 'mcp-mesh-attempts accounts for every retry the apps saw');
  });
});

describe('retries beyond the budget are not made', { timeout: 60_000 }, () => {
  const BUDGET = { ratio: 0.1, minPerSecond: 1, windowSeconds: 30 };
  const started = useFleet({ service: 'billing', replicas: 1, policies: retry503Policy('billing', BUDGET, ['retryOn: [unavailable]', 'backoff: { base: 1ms, max: 1ms }']) });

  test('a service answering 503 to everything: 200 calls wanting 400 retries get only what the budget allows', async () => {
    const fleet = started();
    fleet.replicas[0]!.app.behaviour.failing = 'always';
    const calls = 200;
    const { results } = await runLoad({ total: calls, concurrency: 8, timeLimitMs: 20_000, call: (i) => fleet.call(`/work/${i}`) });
    assert.equal(results.length, calls);
    assert.ok(results.every((r) => r.status === 503 && r.code === undefined), 'every call ends with the app\'s own 503');
    const retries = fleet.hits()[0]! - calls;
    const allowed = budgetAllows(BUDGET, calls);
    console.log(`budget cap: ${calls} calls, ${retries} retries made of ${calls * 2} wanted, budget allows ${allowed}`);
    await assertOneBudgetWindow(fleet, 'billing', { calls, retries });
    assert.ok(retries <= allowed, `${retries} retries ≤ budget ${allowed}`);
    // The allowance grows with the calls made so far, so the last few calls may find it spent.
    assert.ok(retries >= allowed - 8, `the budget was used (${retries} of ${allowed})`);
    assert.equal(sum(results.map((r) => r.attempts - 1)), retries);
  });
});

describe('the circuit breaker of a service that is down', { timeout: 60_000 }, () => {
  const VOLUME = 5;
  const started = useFleet({
      service: 'ledger', replicas: 1,
      policies: {
        'ledger.yaml': policy('ledger', 'ledger', [
          '  circuitBreaker:',
          `    volumeThreshold: ${VOLUME}`,
          '    errorThresholdPercentage: 50',
          '    rollingWindow: 10s',
          '    resetTimeout: 1s',
          '',
        ].join('\n')),
      },
    });

  // "Down" here is the app answering 503 to everything while its sidecar stays up: every call then
  // reaches the breaker as a counted failure, and recovery has to go through half-open. (A dead
  // sidecar would also open the breaker, but its link coming back closes the breakers at once, by
  // design, so half-open would not be exercised.)
  const isService = (l: LogLine) => l.target === 'ledger.default' && l.endpoint === undefined;

  test('opens after volumeThreshold failures, refuses without calling the app while open, closes through half-open once the app is back', async () => {
    const fleet = started();
    const app = fleet.replicas[0]!.app;
    app.behaviour.failing = 'always';
    const opened = fleet.caller.mark();
    for (let i = 0; i < VOLUME; i++) {
      const outcome = await fleet.call(`/work/${i}`);
      assert.equal(outcome.status, 503);
      assert.equal(outcome.code, undefined, `call ${i} got the app's own 503, not a mesh error`);
    }
    await fleet.caller.waitForLog((l) => l.msg === 'circuit breaker open' && isService(l), { since: opened, timeoutMs: 2000 });
    const halfOpenMark = fleet.caller.mark();

    // Refusals while open: the breaker's own code, and nothing reaches the app. A breaker that waited
    // for the app would pass its 503 on (no code) and count at the app; one that waited for a timeout
    // would answer DEADLINE_EXCEEDED. How fast a refusal is belongs to the bench: the figures are
    // printed for the record only.
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const outcome = await fleet.call(`/work/open-${i}`);
      assert.equal(outcome.status, 503);
      assert.equal(outcome.code, 'CIRCUIT_OPEN', `open-${i} while open: ${outcome.status} ${outcome.body}`);
      times.push(outcome.ms);
    }
    assert.equal(app.count('/work'), VOLUME, 'nothing reached the app while the breaker was open');
    const sorted = [...times].sort((a, b) => a - b);
    console.log(`breaker open: 20 CIRCUIT_OPEN refusals at the client: median ${sorted[10]!.toFixed(2)} ms, max ${sorted[19]!.toFixed(2)} ms`);

    // The service returns. After resetTimeout the breaker is half-open; the next call is its probe.
    app.behaviour.failing = 'never';
    await fleet.caller.waitForLog((l) => l.msg === 'circuit breaker half-open' && isService(l), { since: halfOpenMark, timeoutMs: 2000 });
    const closedMark = fleet.caller.mark();
    const probe = await fleet.call('/work/probe');
    assert.equal(probe.status, 200, `the probe went through: ${probe.status} ${probe.code}`);
    await fleet.caller.waitForLog((l) => l.msg === 'circuit breaker closed' && isService(l), { since: closedMark, timeoutMs: 2000 });
    for (let i = 0; i < 10; i++) assert.equal((await fleet.call(`/work/after-${i}`)).status, 200);
    assert.equal(app.count('/work'), VOLUME + 11);
  });
});

describe('the concurrency limit of a service', { timeout: 30_000 }, () => {
  const started = useFleet({
      service: 'reports', replicas: 1,
      policies: { 'reports.yaml': policy('reports', 'reports', '  concurrency: { maxInFlight: 2, maxQueue: 1, retryAfterSeconds: 2 }\n') },
    });

  test('maxInFlight 2, maxQueue 1: two calls held at the app, one queued, the 4th gets 503 OVERLOADED with Retry-After', async () => {
    const fleet = started();
    const app = fleet.replicas[0]!.app;
    const first = fleet.call('/hold/1');
    const second = fleet.call('/hold/2');
    const heldA = await within(app.nextHeld(), 5000, 'the first call never reached the app');
    const heldB = await within(app.nextHeld(), 5000, 'the second call never reached the app');
    const third = fleet.call('/hold/3');
    const queued = async () => {
      const view = await adminJson<{ services: Record<string, { concurrency: { inFlight: number; queued: number }[] }> }>(fleet.caller, '/endpoints');
      const concurrency = view.services['reports.default']?.concurrency[0];
      return concurrency?.inFlight === 2 && concurrency.queued === 1;
    };
    await until(queued, { message: 'the third call was never queued' });

    const fourth = await fleet.call('/hold/4');
    assert.equal(fourth.status, 503);
    assert.equal(fourth.code, 'OVERLOADED');
    assert.equal(fourth.retryAfter, '2', 'Retry-After comes from the policy');
    assert.equal(app.count('/hold'), 2, 'neither the queued call nor the refused one reached the app');

    // A slot frees up: the queued call goes through; nothing was lost.
    heldA.release('one');
    const heldC = await within(app.nextHeld(), 5000, 'the queued call never reached the app');
    assert.equal(heldC.req.url, '/hold/3');
    heldB.release('two');
    heldC.release('three');
    assert.deepEqual((await Promise.all([first, second, third])).map((r) => `${r.status} ${r.body}`), ['200 one', '200 two', '200 three']);
  });
});

describe('retries and methods', { timeout: 30_000 }, () => {
  // Default retries (connect-failure, refused-stream, reset; idempotent methods only), plus one
  // route that opts POST in.
  const started = useFleet({
    service: 'mailer', replicas: 1,
    policies: {
      'mailer.yaml': policy('mailer-opt-in', 'mailer', [
        '  route:',
        '    name: opt-in',
        '    match: { path: { prefix: /reset-once/opt-in }, methods: [POST] }',
        '  retries: { nonIdempotent: true }',
        '',
      ].join('\n')),
    },
  });

  test('the app resets the connection once: a GET is retried (mcp-mesh-attempts: 2), a POST is not, unless its route opts in', async () => {
    const fleet = started();
    const app = fleet.replicas[0]!.app;
    const plain = await fleet.call('/work/plain');
    assert.equal(plain.status, 200);
    assert.equal(plain.attempts, 1, 'a call that succeeds at once says 1 attempt');

    const get = await fleet.call('/reset-once/get');
    assert.equal(get.status, 200, `GET after a reset: ${get.status} ${get.code}`);
    assert.equal(get.attempts, 2);
    assert.equal(app.countPath('/reset-once/get'), 2, 'the app saw the GET twice');

    const post = await fleet.call('/reset-once/post', { method: 'POST', body: 'once' });
    assert.equal(post.status, 502);
    assert.equal(post.code, 'APP_RESET');
    assert.equal(post.attempts, 1);
    assert.equal(app.countPath('/reset-once/post'), 1, 'the POST was not replayed: it may have had an effect');

    const optedIn = await fleet.call('/reset-once/opt-in/1', { method: 'POST', body: 'again' });
    assert.equal(optedIn.status, 200, `POST on a nonIdempotent route: ${optedIn.status} ${optedIn.code}`);
    assert.equal(optedIn.attempts, 2);
    assert.equal(app.countPath('/reset-once/opt-in/1'), 2);
  });
});

describe('a link reset with a call in flight', { timeout: 30_000 }, () => {
  const started = useFleet({ service: 'notify', replicas: 3 });

  // One outstanding nextHeld() per app: a waiter that lost a race stays queued in its app and will be
  // handed that app's next held request, so it is kept for the next time rather than asked again.
  const waiting = new Map<TestApp, Promise<HeldRequest>>();
  const heldAt = (app: TestApp) => {
    const next = waiting.get(app) ?? app.nextHeld();
    waiting.set(app, next);
    return next;
  };

  /** Send a call to /hold/…, wait until some replica's app holds it, SIGKILL that replica's sidecar. */
  async function killWhereHeld(path: string, method: 'GET' | 'POST') {
    const fleet = started();
    const live = fleet.replicas.filter((r) => r.sidecar.exitStatus === undefined);
    const response = fleet.call(path, { method, body: method === 'POST' ? 'x' : undefined });
    const replica = await within(Promise.race(live.map((r) => heldAt(r.app).then(() => r))), 5000, `the ${method} never reached an app`);
    waiting.delete(replica.app);
    replica.sidecar.signal('SIGKILL');
    await replica.sidecar.exited;
    return { response, replica };
  }

  test('a POST in flight when the link breaks fails with LINK_BROKEN, tried once; a GET is retried on another replica', async () => {
    const fleet = started();
    const post = await killWhereHeld('/hold/post', 'POST');
    const postOutcome = await within(post.response, 5000, 'the POST got no answer');
    assert.equal(postOutcome.status, 502);
    assert.equal(postOutcome.code, 'LINK_BROKEN');
    assert.equal(postOutcome.attempts, 1);
    assert.equal(sum(fleet.replicas.map((r) => r.app.countPath('/hold/post'))), 1, 'the POST reached one app, once');

    const get = await killWhereHeld('/hold/get', 'GET');
    const survivor = fleet.replicas.find((r) => r.sidecar.exitStatus === undefined)!;
    const retried = await within(heldAt(survivor.app), 5000, 'the GET was not retried on the surviving replica');
    assert.equal(retried.req.url, '/hold/get');
    retried.release('from the survivor');
    const getOutcome = await within(get.response, 5000, 'the GET got no answer');
    assert.equal(getOutcome.status, 200);
    assert.equal(getOutcome.body, 'from the survivor');
    assert.equal(getOutcome.attempts, 2);
  });
});
