// `pymri dap` attaching to a program whose agent listens over TLS and holds it before its first
// line (`python -m pymri_agent --listen tls:... --wait`, fixtures/pdb/discount.py): the
// editor's breakpoint is in place before the program starts at `configurationDone`, its
// arguments are read at the stop, and the program runs to its end, which ends the session.
//
// Environment (set by crates/pymri/tests/dap.rs): PYMRI_BIN, PYMRI_DAP_CONNECT_PORT (the
// agent's TLS port on 127.0.0.1), PYMRI_DAP_SECRET (the secret file), PYMRI_DAP_SCRIPT (the
// program, as this test sees it), PYMRI_DAP_DIR and PYMRI_DAP_DIR_INSIDE (its directory, as this
// test and as the program see it).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { env, mark, Client } = require('./lib');

test('attach with connect: TLS, a breakpoint before the start, the program to its end', async (t) => {
  const c = new Client();
  await c.start();
  t.after(() => c.close());
  try {
    await c.dc.initializeRequest({ adapterID: 'pymri' });
    await c.dc.attachRequest({
      type: 'pymri',
      request: 'attach',
      connect: { host: '127.0.0.1', port: Number(env('PYMRI_DAP_CONNECT_PORT')) },
      tls: true,
      secretFile: env('PYMRI_DAP_SECRET'),
      pathMappings: [{ localRoot: env('PYMRI_DAP_DIR'), remoteRoot: env('PYMRI_DAP_DIR_INSIDE') }],
    });
    await c.take('initialized');
    const line = mark(env('PYMRI_DAP_SCRIPT'), 'discount');
    const set = await c.dc.setBreakpointsRequest({
      source: { path: env('PYMRI_DAP_SCRIPT') },
      breakpoints: [{ line }],
    });
    assert.equal(set.body.breakpoints[0].verified, true, JSON.stringify(set.body));
    await c.dc.configurationDoneRequest();

    const { stop, frames } = await c.stopped();
    assert.equal(stop.reason, 'breakpoint');
    assert.equal(frames[0].name, 'calculate_discount');
    assert.equal(frames[0].line, line);
    assert.equal(frames[0].source.path, env('PYMRI_DAP_SCRIPT'));
    const { vars } = await c.locals(frames[0].id);
    assert.equal(vars.price.value, '100');
    assert.equal(vars.percent.value, '20');

    await c.dc.continueRequest({ threadId: stop.threadId });
    await c.take('terminated');
    await c.disconnect();
  } catch (e) {
    e.message += `\n--- events ---\n${c.transcript()}`;
    throw e;
  }
});
