// Shared by the DAP tests: the configuration the Rust harness (crates/pymri/tests/dap.rs)
// passes in the environment, a client that records every event, and fixture line marks.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

/** A required environment variable (the harness sets them all). */
function env(name) {
  const value = process.env[name];
  assert.ok(value !== undefined, `${name} is not set: run these tests through crates/pymri/tests/dap.rs`);
  return value;
}

/** Every deadline of a test step, in milliseconds. */
const STEP_TIMEOUT = 20000;

/** The 1-based line of `# @mark NAME` in a file. */
function mark(file, name) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const index = lines.findIndex((l) => l.trimEnd().endsWith(`# @mark ${name}`));
  assert.ok(index >= 0, `no mark ${name} in ${file}`);
  return index + 1;
}

/**
 * A DebugClient that records events, so that a test can wait for one that may already have
 * arrived (`waitForEvent` only sees events after it is called).
 */
class Client {
  constructor() {
    this.dc = new DebugClient(env('PYMRI_BIN'), 'dap', 'pymri', { stdio: 'pipe' }, true);
    this.dc.defaultTimeout = STEP_TIMEOUT;
    this.events = [];
    this.waiters = [];
    this.log = [];
    for (const name of ['initialized', 'stopped', 'continued', 'thread', 'output', 'exited', 'terminated', 'breakpoint']) {
      this.dc.on(name, (event) => {
        this.events.push(event);
        this.log.push(`${event.event} ${JSON.stringify(event.body)}`);
        this.wake();
      });
    }
  }

  async start(port) {
    await this.dc.start(port);
  }

  wake() {
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }

  /**
   * The first recorded event named `name` (or any of the names in a list) matching `predicate`
   * that was not taken yet, waiting for it if need be; it is taken (a later call will not
   * return it again). Resolves to its body, with the event's name as `event`.
   */
  take(name, predicate = () => true, timeout = STEP_TIMEOUT) {
    const names = Array.isArray(name) ? name : [name];
    return new Promise((resolve, reject) => {
      const look = () => {
        const index = this.events.findIndex((e) => names.includes(e.event) && !e.taken && predicate(e.body || {}));
        if (index < 0) {
          return false;
        }
        const event = this.events[index];
        event.taken = true;
        resolve({ ...(event.body || {}), event: event.event });
        return true;
      };
      if (look()) {
        return;
      }
      const waiter = () => {
        if (look()) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== waiter);
        }
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no ${name} event within ${timeout} ms; events so far:\n${this.log.join('\n')}`));
      }, timeout);
      this.waiters.push(waiter);
    });
  }

  /** Waits for an `output` event whose text contains `text` (in `category`, if given). */
  output(text, category) {
    return this.take('output', (b) => b.output.includes(text) && (!category || b.category === category));
  }

  /** Waits for the next stop, then returns it with the top frames of its thread. */
  async stopped(predicate) {
    const stop = await this.take('stopped', predicate || (() => true));
    const trace = await this.dc.stackTraceRequest({ threadId: stop.threadId });
    return { stop, frames: trace.body.stackFrames, total: trace.body.totalFrames };
  }

  /** The variables of a reference, as a name → variable map. */
  async variables(reference) {
    assert.ok(reference > 0, `not expandable: ${reference}`);
    const response = await this.dc.variablesRequest({ variablesReference: reference });
    return Object.fromEntries(response.body.variables.map((v) => [v.name, v]));
  }

  async locals(frameId) {
    const scopes = await this.dc.scopesRequest({ frameId });
    const locals = scopes.body.scopes.find((s) => s.name === 'Locals');
    assert.ok(locals, JSON.stringify(scopes.body));
    return { reference: locals.variablesReference, vars: await this.variables(locals.variablesReference) };
  }

  async evaluate(expression, frameId, context = 'repl') {
    const response = await this.dc.evaluateRequest({ expression, frameId, context });
    return response.body;
  }

  /** What the client saw, for a failing test's message. */
  transcript() {
    return this.log.join('\n');
  }

  /** Ends the session (the adapter then exits, in stdio mode). */
  async disconnect(args = {}) {
    this.disconnected = true;
    return this.dc.disconnectRequest(args);
  }

  async close() {
    if (this.disconnected) {
      this.dc.stopAdapter();
    } else {
      await this.dc.stop();
    }
  }
}

/** An HTTP GET of 127.0.0.1:`port``path`, resolving to the body (rejects after `timeout`). */
function get(port, path, timeout = STEP_TIMEOUT) {
  const http = require('node:http');
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path, timeout }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => resolve(body));
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${path}: no answer within ${timeout} ms`)));
    request.on('error', reject);
  });
}

module.exports = { env, mark, Client, get, STEP_TIMEOUT };
