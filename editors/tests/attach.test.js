// `pymri dap` attaching to a running multi-threaded HTTP server (fixtures/http_server.py): a
// breakpoint hit by a request, pause, inspection, an assignment the server then uses, and a
// disconnect that leaves the server running and answering, with no debugger hook left.
//
// Environment (set by crates/pymri/tests/dap.rs): PYMRI_BIN, PYMRI_DAP_PID (the server),
// PYMRI_DAP_PORT (its HTTP port), PYMRI_DAP_SCRIPT (its script, as this test sees it).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { env, mark, Client, get } = require('./lib');

const script = env('PYMRI_DAP_SCRIPT');
const port = Number(env('PYMRI_DAP_PORT'));

test('attach: breakpoint in a live server, inspect, change, disconnect', async (t) => {
  const c = new Client();
  await c.start();
  t.after(() => c.close());
  try {
    await c.dc.initializeRequest({ adapterID: 'pymri' });
    // A string, as VS Code's process picker gives it.
    await c.dc.attachRequest({ type: 'pymri', request: 'attach', processId: env('PYMRI_DAP_PID') });
    await c.take('initialized');
    // Only the crash requests stop: the condition reads the handler's `self`.
    const route = mark(script, 'route');
    const set = await c.dc.setBreakpointsRequest({
      source: { path: script },
      breakpoints: [{ line: route, condition: "self.path.startswith('/crash')" }],
    });
    assert.equal(set.body.breakpoints[0].verified, true, JSON.stringify(set.body));
    await c.dc.configurationDoneRequest();

    // The attach stop is not shown: the server goes on serving.
    assert.match(await get(port, '/health'), /"ok": true/);

    // Pause the main thread (it loops in serve_forever), then let it go.
    const threads = (await c.dc.threadsRequest()).body.threads;
    const main = threads.find((th) => th.name === 'MainThread');
    assert.ok(main, JSON.stringify(threads));
    await c.dc.pauseRequest({ threadId: main.id });
    let { stop, frames } = await c.stopped((s) => s.threadId === main.id);
    assert.equal(stop.reason, 'pause');
    assert.ok(frames.length > 0);
    await c.dc.continueRequest({ threadId: main.id });
    assert.match(await get(port, '/health'), /"ok": true/);

    // A request that reaches the breakpoint, in a handler thread; others are served meanwhile.
    const answer = get(port, '/crash?a=3&b=5');
    ({ stop, frames } = await c.stopped((s) => s.reason === 'breakpoint'));
    assert.notEqual(stop.threadId, main.id);
    assert.equal(frames[0].name.split('.').pop(), 'do_GET');
    assert.equal(frames[0].line, route);
    assert.equal(frames[0].source.path, script);
    assert.match(await get(port, '/add?a=2&b=3'), /"result": 5/);
    const handler = await c.locals(frames[0].id);
    assert.ok(handler.vars.self.variablesReference > 0, 'the request handler can be expanded');
    const self = await c.variables(handler.vars.self.variablesReference);
    assert.equal(self.path.value, "'/crash?a=3&b=5'");
    const query = await c.variables(handler.vars.query.variablesReference);
    assert.deepEqual(Object.values(query).map((v) => v.value), ['3', '5']);

    // Into the helper.
    for (let i = 0; i < 10 && frames[0].name !== 'ratio'; i++) {
      await c.dc.stepInRequest({ threadId: stop.threadId });
      ({ stop, frames } = await c.stopped());
    }
    assert.equal(frames[0].name, 'ratio');
    assert.ok(frames.some((f) => f.name.endsWith('do_GET')), JSON.stringify(frames.map((f) => f.name)));
    const { reference, vars } = await c.locals(frames[0].id);
    assert.equal(vars.total.value, '100');
    assert.equal(vars.a.value, '3');
    assert.equal((await c.evaluate('b - a', frames[0].id)).result, '2');

    // b = 13: the server answers 100 / (13 - 3).
    await c.dc.setVariableRequest({ variablesReference: reference, name: 'b', value: '13' });
    await c.dc.continueRequest({ threadId: stop.threadId });
    assert.match(await answer, /"result": 10\.0/);

    // Disconnect: the server keeps running, without hooks.
    await c.disconnect();
    assert.match(await get(port, '/health'), /"ok": true/);
    const hooks = await get(port, '/hooks');
    assert.match(hooks, /"trace": "None"/);
    assert.match(hooks, /"threading_trace": "None"/);
  } catch (e) {
    e.message += `\n--- events ---\n${c.transcript()}`;
    throw e;
  }
});
