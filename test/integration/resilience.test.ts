// Resilience on real processes: retries around a replica that dies mid-load, retries within their
// budget around a flaky replica, the service circuit breaker (open, fast refusal, half-open, closed),
// the concurrency limit, and which methods are retried.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startFleet, adminJson, type CallOutcome, type Fleet } from '../helpers/fleet.ts';
import { condition, runLoad } from '../helpers/load.ts';
import { policy } from '../helpers/policies.ts';
import type { LogLine } from '../helpers/sidecar-process.ts';
import { within } from '../helpers/wait.ts';

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

describe('a replica killed during load', { timeout: 60_000 }, () => {
  let fleet: Fleet;
  before(async () => { fleet = await startFleet({ service: 'catalog', replicas: 3, connections: 16 }); });
  after(() => fleet?.close());

  test('2,000 GETs, one of 3 replicas SIGKILLed mid-load with a call in flight on it: zero failed calls (default policy)', async () => {
    const [, victim] = fleet.replicas as [unknown, (typeof fleet.replicas)[number]];
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
  const BUDGET = { ratio: 0.2, minPerSecond: 10, windowSeconds: 10 };
  let fleet: Fleet;
  before(async () => {
    fleet = await startFleet({ service: 'inventory', replicas: 3, policies: retry503Policy('inventory', BUDGET, ['retryOn: [connect-failure, refused-stream, reset, unavailable]']) });
  });
  after(() => fleet?.close());

  test('1,000 GETs: ≥ 99.9% succeed, retries counted at the apps stay within ratio × calls + minPerSecond × window', async () => {
    fleet.replicas[0]!.app.behaviour.failing = 'every-other';
    const calls = 1000;
    const { results, elapsedMs } = await runLoad({ total: calls, concurrency: 16, timeLimitMs: 20_000, call: (i) => fleet.call(`/work/${i}`) });
    assert.equal(results.length, calls, 'all calls made within the time limit');
    assert.ok(elapsedMs < BUDGET.windowSeconds * 1000, 'the load fits in one budget window, so one window\'s allowance is the bound');

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
    assert.ok(retries <= allowed, `${retries} retries ≤ budget ${allowed}`);
    assert.equal(sum(results.map((r) => r.attempts - 1)), retries, 'mcp-mesh-attempts accounts for every retry the apps saw');
    const view = await adminJson<{ services: Record<string, { retryBudget: { calls: number; retries: number } }> }>(fleet.caller, '/endpoints');
    assert.deepEqual(view.services['inventory.default']!.retryBudget, { calls, retries });
  });
});

describe('retries beyond the budget are not made', { timeout: 60_000 }, () => {
  const BUDGET = { ratio: 0.1, minPerSecond: 1, windowSeconds: 10 };
  let fleet: Fleet;
  before(async () => {
    fleet = await startFleet({ service: 'billing', replicas: 1, policies: retry503Policy('billing', BUDGET, ['retryOn: [unavailable]', 'backoff: { base: 1ms, max: 1ms }']) });
  });
  after(() => fleet?.close());

  test('a service answering 503 to everything: 200 calls wanting 400 retries get only what the budget allows', async () => {
    fleet.replicas[0]!.app.behaviour.failing = 'always';
    const calls = 200;
    const { results, elapsedMs } = await runLoad({ total: calls, concurrency: 8, timeLimitMs: 20_000, call: (i) => fleet.call(`/work/${i}`) });
    assert.equal(results.length, calls);
    assert.ok(elapsedMs < BUDGET.windowSeconds * 1000);
    assert.ok(results.every((r) => r.status === 503 && r.code === undefined), 'every call ends with the app\'s own 503');
    const retries = fleet.hits()[0]! - calls;
    const allowed = budgetAllows(BUDGET, calls);
    console.log(`budget cap: ${calls} calls, ${retries} retries made of ${calls * 2} wanted, budget allows ${allowed}`);
    assert.ok(retries <= allowed, `${retries} retries ≤ budget ${allowed}`);
    // The allowance grows with the calls made so far, so the last few calls may find it spent.
    assert.ok(retries >= allowed - 8, `the budget was used (${retries} of ${allowed})`);
    assert.equal(sum(results.map((r) => r.attempts - 1)), retries);
  });
});

describe('the circuit breaker of a service that is down', { timeout: 60_000 }, () => {
  const VOLUME = 5;
  let fleet: Fleet;
  before(async () => {
    fleet = await startFleet({
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
  });
  after(() => fleet?.close());

  // "Down" here is the app answering 503 to everything while its sidecar stays up: every call then
  // reaches the breaker as a counted failure, and recovery has to go through half-open. (A dead
  // sidecar would also open the breaker, but its link coming back closes the breakers at once, by
  // design, so half-open would not be exercised.)
  const isService = (l: LogLine) => l.target === 'ledger.default' && l.endpoint === undefined;

  test('opens after volumeThreshold failures, refuses in < 5 ms while open, closes through half-open once the app is back', async () => {
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

    // Refusals while open. The first few dozen in a fresh sidecar run cold code (JIT) and take 2–9 ms
    // on a 2-core machine; those are made first and checked but not timed, then 20 are timed. One
    // sample in a few hundred is delayed by the OS or a GC on a 2-core machine shared by four
    // processes (a trivial GET /healthz on the admin port shows the same), so the bound is: 19 of 20
    // under 5 ms, none over 25 ms. A breaker that waited, or sent the call on, fails both.
    const refuse = async (label: string) => {
      const outcome = await fleet.call(`/work/${label}`);
      assert.equal(outcome.status, 503);
      assert.equal(outcome.code, 'CIRCUIT_OPEN', `${label} while open: ${outcome.status} ${outcome.body}`);
      return outcome.ms;
    };
    for (let i = 0; i < 50; i++) await refuse(`warm-${i}`);
    const times: number[] = [];
    for (let i = 0; i < 20; i++) times.push(await refuse(`open-${i}`));
    assert.equal(app.count('/work'), VOLUME, 'nothing reached the app while the breaker was open');
    const sorted = [...times].sort((a, b) => a - b);
    const figures = `median ${sorted[10]!.toFixed(2)} ms, 19th of 20 ${sorted[18]!.toFixed(2)} ms, max ${sorted[19]!.toFixed(2)} ms`;
    console.log(`breaker open: 20 CIRCUIT_OPEN refusals timed at the client: ${figures}`);
    assert.ok(sorted[18]! < 5, `19 of 20 refusals took under 5 ms (${figures})`);
    assert.ok(sorted[19]! < 25, `no refusal took 25 ms or more (${figures})`);

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
