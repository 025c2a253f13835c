// The VS Code extension of editors/vscode, loaded with a stand-in for the `vscode` module (the
// editor itself is not run): its manifest declares the debug type and the launch and attach
// attributes the adapter reads, its adapter is `pymri dap` and answers a real DAP client, and
// its process picker lists a real Python process through `pymri ps --json`.
//
// Environment (set by crates/pymri/tests/dap.rs): PYMRI_BIN, PYMRI_DAP_PYTHON (a host
// interpreter).
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const cp = require('node:child_process');
const Module = require('node:module');
const path = require('node:path');
const { DebugClient } = require('@vscode/debugadapter-testsupport');
const { env, STEP_TIMEOUT } = require('./lib');

const extensionDir = path.join(__dirname, '..', 'vscode');
const manifest = require(path.join(extensionDir, 'package.json'));

/** Loads the extension against a fake `vscode`; returns what it registered. */
function loadExtension(settings, pick) {
  const registered = { factories: {}, commands: {} };
  class DebugAdapterExecutable {
    constructor(command, args) {
      this.command = command;
      this.args = args;
    }
  }
  const vscode = {
    DebugAdapterExecutable,
    workspace: { getConfiguration: (section) => ({ get: (key) => settings[`${section}.${key}`] }) },
    debug: {
      registerDebugAdapterDescriptorFactory: (type, factory) => {
        registered.factories[type] = factory;
        return { dispose() {} };
      },
    },
    commands: {
      registerCommand: (name, callback) => {
        registered.commands[name] = callback;
        return { dispose() {} };
      },
    },
    window: { showQuickPick: async (items) => pick(items) },
  };
  const load = Module._load;
  Module._load = function (request, ...rest) {
    return request === 'vscode' ? vscode : load.call(this, request, ...rest);
  };
  try {
    const main = path.join(extensionDir, manifest.main);
    delete require.cache[require.resolve(main)];
    const extension = require(main);
    const context = { subscriptions: [] };
    extension.activate(context);
    assert.equal(context.subscriptions.length, 2);
  } finally {
    Module._load = load;
  }
  return registered;
}

test('the manifest declares the pymri debug type and its attributes', () => {
  const [debuggerEntry] = manifest.contributes.debuggers;
  assert.equal(debuggerEntry.type, 'pymri');
  assert.deepEqual(debuggerEntry.languages, ['python']);
  const launch = Object.keys(debuggerEntry.configurationAttributes.launch.properties);
  for (const name of ['program', 'module', 'args', 'cwd', 'env', 'python', 'stopOnEntry', 'root', 'pathMappings']) {
    assert.ok(launch.includes(name), `launch.${name}`);
  }
  const attach = Object.keys(debuggerEntry.configurationAttributes.attach.properties);
  for (const name of ['processId', 'connect', 'secretFile', 'timeout']) {
    assert.ok(attach.includes(name), `attach.${name}`);
  }
  assert.equal(debuggerEntry.variables.pickProcess, 'pymri.pickProcess');
  assert.ok(manifest.contributes.commands.some((c) => c.command === 'pymri.pickProcess'));
  assert.ok(manifest.activationEvents.includes('onDebugResolve:pymri'));
});

test('the adapter is `pymri dap` and speaks DAP', async () => {
  const defaults = loadExtension({}, () => undefined);
  const descriptor = defaults.factories.pymri.createDebugAdapterDescriptor({ configuration: {} });
  assert.equal(descriptor.command, 'pymri');
  assert.deepEqual(descriptor.args, ['dap']);

  const configured = loadExtension({ 'pymri.path': env('PYMRI_BIN') }, () => undefined);
  const real = configured.factories.pymri.createDebugAdapterDescriptor({ configuration: {} });
  assert.equal(real.command, env('PYMRI_BIN'));
  const dc = new DebugClient(real.command, real.args[0], 'pymri');
  dc.defaultTimeout = STEP_TIMEOUT;
  await dc.start();
  try {
    const init = await dc.initializeRequest({ adapterID: 'pymri' });
    assert.equal(init.body.supportsConfigurationDoneRequest, true);
  } finally {
    await dc.stop();
  }
});

test('pickProcess lists Python processes and returns the chosen pid', async (t) => {
  const python = cp.spawn(env('PYMRI_DAP_PYTHON'), ['-c', 'import time; print("up", flush=True); time.sleep(60)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => python.kill());
  await new Promise((resolve) => python.stdout.once('data', resolve));
  let offered = [];
  const registered = loadExtension({ 'pymri.path': env('PYMRI_BIN') }, (items) => {
    offered = items;
    return items.find((i) => i.pid === String(python.pid));
  });
  const pid = await registered.commands['pymri.pickProcess']();
  assert.equal(pid, String(python.pid), JSON.stringify(offered));
  const item = offered.find((i) => i.pid === pid);
  assert.match(item.description, /^Python 3\./);

  const none = loadExtension({ 'pymri.path': env('PYMRI_BIN') }, () => undefined);
  assert.equal(await none.commands['pymri.pickProcess'](), undefined, 'cancelling the pick cancels the attach');
});
