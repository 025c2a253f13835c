// `pymri dap --listen`: clients over TCP, one after the other, on loopback; a client sending
// garbage gets an error response (bad JSON) or is dropped (bad framing) and the server lives on.
//
// Environment (set by crates/pymri/tests/dap.rs): PYMRI_BIN, and the launch test's
// PYMRI_DAP_PYTHON, PYMRI_DAP_ROOT, PYMRI_DAP_DIR, PYMRI_DAP_DIR_INSIDE.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const cp = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const { env, Client, STEP_TIMEOUT } = require('./lib');

/** Starts `pymri dap --listen 0` and resolves to [process, port] once it says where. */
function listen() {
  return new Promise((resolve, reject) => {
    const server = cp.spawn(env('PYMRI_BIN'), ['dap', '--listen', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`no listening address:\n${stderr}`)), STEP_TIMEOUT);
    server.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve([server, Number(m[1])]);
      }
    });
    server.on('exit', (code) => reject(new Error(`pymri dap exited (${code}):\n${stderr}`)));
  });
}

/** Sends raw bytes and collects what comes back until the server closes or `ms` passed. */
function raw(port, bytes, ms = 2000) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(port, '127.0.0.1');
    let received = '';
    const done = () => {
      socket.destroy();
      resolve(received);
    };
    const timer = setTimeout(done, ms);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d) => (received += d));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.on('error', reject);
  });
}

/** The JSON messages in a DAP byte stream. */
function frames(text) {
  const out = [];
  let rest = Buffer.from(text, 'utf8');
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) {
      return out;
    }
    const length = Number(/Content-Length: (\d+)/.exec(rest.subarray(0, end).toString())[1]);
    out.push(JSON.parse(rest.subarray(end + 4, end + 4 + length).toString()));
    rest = rest.subarray(end + 4 + length);
  }
}

test('listen: two clients in turn, garbage refused', async (t) => {
  const [server, port] = await listen();
  t.after(() => server.kill());

  // Bad JSON in a good frame: an error response; then a real request on the same connection.
  const body = '{"seq": 1, "type": "request", "command": "initialize", "arguments": {}}';
  const reply = await raw(port, `Content-Length: 5\r\n\r\n{oops` + `Content-Length: ${body.length}\r\n\r\n${body}`);
  const [refused, answered] = frames(reply);
  assert.equal(refused.success, false);
  assert.match(refused.message, /not valid JSON/);
  assert.equal(answered.command, 'initialize');
  assert.equal(answered.request_seq, 1);
  assert.equal(answered.success, true);
  // A broken header: the connection is dropped.
  assert.equal(await raw(port, 'Content-Length: lots\r\n\r\n'), '');

  for (const round of [1, 2]) {
    const c = new Client();
    await c.start(port);
    try {
      await c.dc.initializeRequest({ adapterID: 'pymri' });
      const root = process.env.PYMRI_DAP_ROOT;
      await c.dc.launchRequest({
        program: path.join(env('PYMRI_DAP_DIR_INSIDE'), 'basket.py'),
        args: [`round${round}`],
        python: env('PYMRI_DAP_PYTHON'),
        ...(root ? { root } : {}),
      });
      await c.take('initialized');
      await c.dc.configurationDoneRequest();
      await c.output('total 250', 'stdout');
      assert.equal((await c.take('exited')).exitCode, 3);
      await c.take('terminated');
      await c.disconnect();
    } catch (e) {
      e.message += `\n--- events ---\n${c.transcript()}`;
      throw e;
    } finally {
      c.dc.stopAdapter();
    }
  }
});
