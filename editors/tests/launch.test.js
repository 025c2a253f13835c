// `pymri dap` launching fixtures/dap/basket.py, driven as an editor drives it: breakpoints with
// a condition and a log message, stepping in, over and out, the stack, expandable variables,
// evaluation in the console and on hover, an assignment that changes what the program computes,
// and the program's output, exit status and end.
//
// Environment (set by crates/pymri/tests/dap.rs): PYMRI_BIN, PYMRI_DAP_PYTHON (the interpreter,
// inside PYMRI_DAP_ROOT if set), PYMRI_DAP_ROOT (a root to chroot into, or empty),
// PYMRI_DAP_DIR (the fixture's directory as this test sees it) and PYMRI_DAP_DIR_INSIDE (as the
// program sees it).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { env, mark, Client } = require('./lib');

const dir = env('PYMRI_DAP_DIR');
const dirInside = env('PYMRI_DAP_DIR_INSIDE');
const script = path.join(dir, 'basket.py');
const line = (name) => mark(script, name);

function launchArguments(extra = {}) {
  const root = process.env.PYMRI_DAP_ROOT;
  return {
    type: 'pymri',
    request: 'launch',
    program: path.join(dirInside, 'basket.py'),
    args: ['ada'],
    cwd: dirInside,
    python: env('PYMRI_DAP_PYTHON'),
    ...(root ? { root } : {}),
    env: { PYMRI_DAP_TEST: '1' },
    ...extra,
  };
}

test('launch: breakpoints, log points, stepping, variables, evaluation, end', async (t) => {
  const c = new Client();
  await c.start();
  t.after(() => c.close());
  try {
    const init = await c.dc.initializeRequest({ adapterID: 'pymri', linesStartAt1: true, columnsStartAt1: true });
    const caps = init.body;
    for (const cap of [
      'supportsConfigurationDoneRequest', 'supportsConditionalBreakpoints', 'supportsHitConditionalBreakpoints',
      'supportsLogPoints', 'supportsFunctionBreakpoints', 'supportsSetVariable', 'supportsEvaluateForHovers',
      'supportsTerminateRequest', 'supportTerminateDebuggee',
    ]) {
      assert.equal(caps[cap], true, cap);
    }
    assert.deepEqual(caps.exceptionBreakpointFilters.map((f) => f.filter), ['raised', 'uncaught']);

    await c.dc.launchRequest(launchArguments());
    await c.take('initialized');
    const set = await c.dc.setBreakpointsRequest({
      source: { path: script },
      breakpoints: [
        { line: line('call'), condition: 'i == 1' },
        { line: line('loop'), logMessage: 'item={item} cost={cost}' },
      ],
    });
    assert.equal(set.body.breakpoints.length, 2);
    for (const [i, bp] of set.body.breakpoints.entries()) {
      assert.equal(bp.verified, true, JSON.stringify(bp));
      assert.equal(bp.line, [line('call'), line('loop')][i]);
      assert.equal(bp.source.path, script);
    }
    await c.dc.setExceptionBreakpointsRequest({ filters: ['uncaught'] });
    await c.dc.configurationDoneRequest();

    // The log point's message, from the first round (i == 0), where the condition was false.
    const log = await c.output('item=apple cost=50');
    assert.equal(log.category, 'console');
    assert.equal(log.line, line('loop'));

    // Only the second round (i == 1) stops.
    let { stop, frames, total } = await c.stopped();
    assert.equal(stop.reason, 'breakpoint');
    assert.equal(stop.allThreadsStopped, false);
    assert.deepEqual(frames.map((f) => f.name), ['total', 'main', '<module>']);
    assert.equal(total, 3);
    assert.equal(frames[0].line, line('call'));
    assert.equal(frames[0].source.path, script);
    const thread = stop.threadId;
    const threads = await c.dc.threadsRequest();
    assert.ok(threads.body.threads.some((th) => th.id === thread && th.name === 'MainThread'), JSON.stringify(threads.body));

    // Paging through the stack.
    const page = await c.dc.stackTraceRequest({ threadId: thread, startFrame: 1, levels: 1 });
    assert.deepEqual(page.body.stackFrames.map((f) => f.name), ['main']);
    assert.equal(page.body.totalFrames, 3);

    // Variables: an object, its list, the dict being filled.
    let top = frames[0].id;
    let { reference, vars } = await c.locals(top);
    assert.equal(vars.i.value, '1');
    assert.equal(vars.item.value, "'pear'");
    assert.ok(vars.basket.variablesReference > 0, JSON.stringify(vars.basket));
    const basket = await c.variables(vars.basket.variablesReference);
    assert.equal(basket.owner.value, "'ada'");
    assert.ok(basket.items.variablesReference > 0);
    const items = Object.values(await c.variables(basket.items.variablesReference)).map((v) => v.value);
    assert.deepEqual(items.slice(0, 3), ["'apple'", "'pear'", "'plum'"]);
    assert.ok(vars.prices.variablesReference > 0);
    const prices = Object.values(await c.variables(vars.prices.variablesReference));
    assert.ok(prices.some((v) => v.value === '50'), JSON.stringify(prices));

    // Evaluation: the console takes expressions and statements; hovers take expressions.
    assert.equal((await c.evaluate('i + 41', top)).result, '42');
    assert.equal((await c.evaluate('item', top, 'hover')).result, "'pear'");
    const hovered = await c.evaluate('basket', top, 'hover');
    assert.ok(hovered.variablesReference > 0, 'an object can be expanded from a hover');
    assert.equal((await c.evaluate('print("from the console")', top)).result, '');
    await c.output('from the console');
    await assert.rejects(c.evaluate('no_such_name', top), /NameError/);
    const completions = await c.dc.completionsRequest({ frameId: top, text: 'x = bask', column: 9 });
    const basketItem = completions.body.targets.find((item) => item.label === 'basket');
    assert.ok(basketItem, JSON.stringify(completions.body));
    assert.equal(basketItem.start, 5);
    assert.equal(basketItem.length, 4);
    await assert.rejects(c.evaluate('import os', top, 'hover'), /SyntaxError|invalid syntax/);

    // An assignment the program then uses: price('fig', 2) is 60, not price('pear', 2) = 80.
    const assigned = await c.dc.setVariableRequest({ variablesReference: reference, name: 'item', value: "'fig'" });
    assert.equal(assigned.body.value, "'fig'");

    // Step into price().
    await c.dc.stepInRequest({ threadId: thread });
    ({ stop, frames } = await c.stopped());
    assert.equal(stop.reason, 'step');
    assert.equal(frames[0].name, 'price');
    assert.equal(frames[0].line, line('price'));
    assert.equal((await c.evaluate('item', frames[0].id, 'hover')).result, "'fig'");
    assert.equal((await c.evaluate('count', frames[0].id, 'watch')).result, '2');

    // Over a line, then out to the caller.
    await c.dc.nextRequest({ threadId: thread });
    ({ stop, frames } = await c.stopped());
    assert.equal(frames[0].line, line('price_return'));
    await c.dc.stepOutRequest({ threadId: thread });
    ({ stop, frames } = await c.stopped());
    assert.equal(stop.reason, 'step');
    assert.equal(frames[0].name, 'total', 'step out ends in the caller');
    assert.ok([line('call'), line('store')].includes(frames[0].line), `at ${frames[0].line}`);
    while (frames[0].line !== line('loop')) {
      await c.dc.nextRequest({ threadId: thread });
      ({ stop, frames } = await c.stopped());
      assert.equal(frames[0].name, 'total');
    }
    top = frames[0].id;
    assert.equal((await c.evaluate('cost', top)).result, '60');
    ({ vars } = await c.locals(top));
    const filled = Object.values(await c.variables(vars.prices.variablesReference)).map((v) => v.value);
    assert.deepEqual(filled, ['50', '60']);

    // To the end: the log point, the output, the exit status.
    await c.dc.continueRequest({ threadId: thread });
    await c.output('item=fig cost=60');
    await c.output('item=plum cost=120');
    const out = await c.output('total 230', 'stdout');
    assert.ok(out.output.endsWith('\n'));
    await c.output('done', 'stderr');
    const exited = await c.take('exited');
    assert.equal(exited.exitCode, 3);
    await c.take('terminated');
  } catch (e) {
    e.message += `\n--- events ---\n${c.transcript()}`;
    throw e;
  }
});

test('launch: stop on entry, a module, function breakpoints, hit conditions', async (t) => {
  const c = new Client();
  await c.start();
  t.after(() => c.close());
  try {
    await c.dc.initializeRequest({ adapterID: 'pymri' });
    const args = launchArguments({ program: undefined, module: 'basket', stopOnEntry: true });
    await c.dc.launchRequest(args);
    await c.take('initialized');
    await c.dc.configurationDoneRequest();
    let { stop, frames } = await c.stopped();
    assert.equal(stop.reason, 'entry');
    assert.equal(frames[0].name, '<module>');
    assert.equal(frames[0].source.path, script);

    // Every second hit of the line, counted over its hits.
    const set = await c.dc.setBreakpointsRequest({
      source: { path: script },
      breakpoints: [{ line: line('store'), hitCondition: '% 2' }],
    });
    assert.equal(set.body.breakpoints[0].verified, true);
    await c.dc.continueRequest({ threadId: stop.threadId });
    ({ stop, frames } = await c.stopped());
    assert.equal(stop.reason, 'breakpoint');
    let top = frames[0].id;
    assert.equal((await c.evaluate('item', top)).result, "'pear'");

    // A function breakpoint with a condition; line breakpoints cleared.
    await c.dc.setBreakpointsRequest({ source: { path: script }, breakpoints: [] });
    const fbp = await c.dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'price', condition: "item == 'plum'" }] });
    assert.equal(fbp.body.breakpoints[0].verified, true, JSON.stringify(fbp.body));
    await c.dc.continueRequest({ threadId: stop.threadId });
    ({ stop, frames } = await c.stopped());
    assert.equal(stop.reason, 'function breakpoint');
    assert.equal(frames[0].name, 'price');
    top = frames[0].id;
    assert.equal((await c.evaluate('item', top)).result, "'plum'");

    // A bad condition is refused, not set.
    const bad = await c.dc.setBreakpointsRequest({
      source: { path: script },
      breakpoints: [{ line: line('loop'), condition: 'i ==' }],
    });
    assert.equal(bad.body.breakpoints[0].verified, false);
    assert.ok(bad.body.breakpoints[0].message, JSON.stringify(bad.body));

    // terminate: the program ends at its stop.
    await c.dc.terminateRequest();
    await c.take('exited');
    await c.take('terminated');
  } catch (e) {
    e.message += `\n--- events ---\n${c.transcript()}`;
    throw e;
  }
});

test('launch: exception filters and the uncaught exception', async (t) => {
  const divide = path.join(dir, 'divide.py');
  for (const filters of [['uncaught'], ['raised'], []]) {
    const c = new Client();
    await c.start();
    try {
      await c.dc.initializeRequest({ adapterID: 'pymri' });
      await c.dc.launchRequest(launchArguments({ program: path.join(dirInside, 'divide.py'), args: [] }));
      await c.take('initialized');
      await c.dc.setExceptionBreakpointsRequest({ filters });
      await c.dc.configurationDoneRequest();
      if (filters.length) {
        const { stop, frames } = await c.stopped();
        assert.equal(stop.reason, 'exception');
        assert.match(stop.text, /ZeroDivisionError/);
        assert.equal(frames[0].name, 'share');
        assert.equal(frames[0].line, mark(divide, 'divide'));
        const info = await c.dc.exceptionInfoRequest({ threadId: stop.threadId });
        assert.equal(info.body.exceptionId, 'ZeroDivisionError');
        assert.equal(info.body.breakMode, filters[0] === 'uncaught' ? 'unhandled' : 'always');
        assert.match(info.body.details.stackTrace, filters[0] === 'uncaught' ? /share/ : /ZeroDivisionError/);
        assert.equal((await c.evaluate('count', frames[0].id)).result, '0');
        await c.dc.continueRequest({ threadId: stop.threadId });
        if (filters[0] === 'raised') {
          // No post-mortem stop (`run` always stops there; the client did not ask), but
          // `raised` reports every exception, also those the standard library handles itself
          // while the interpreter shuts down (and, with agent 0.1.0 on 3.12+, this one again in
          // each outer frame it passes through).
          for (;;) {
            const next = await c.take(['stopped', 'exited']);
            if (next.event === 'exited') {
              assert.equal(next.exitCode, 1);
              break;
            }
            assert.equal(next.reason, 'exception');
            await c.dc.continueRequest({ threadId: next.threadId });
          }
          await c.take('terminated');
          continue;
        }
      }
      await c.output('ZeroDivisionError', 'stderr');
      assert.equal((await c.take('exited')).exitCode, 1);
      await c.take('terminated');
      assert.ok(!c.events.some((e) => e.event === 'stopped' && !e.taken), `filters ${filters}: an unexpected stop`);
    } catch (e) {
      e.message += `\n--- filters ${JSON.stringify(filters)}, events ---\n${c.transcript()}`;
      throw e;
    } finally {
      await c.close();
    }
  }
});
