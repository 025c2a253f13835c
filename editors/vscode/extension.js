// The pymri debugger for VS Code: registers the "pymri" debug type, whose adapter is
// `pymri dap` (the executable named by the `pymri.path` setting), and `${command:pickProcess}`
// for attach configurations, which lists Python processes with `pymri ps --json`.
'use strict';

const vscode = require('vscode');
const cp = require('child_process');

function pymriPath() {
  return vscode.workspace.getConfiguration('pymri').get('path') || 'pymri';
}

/** The adapter for a session: `pymri dap` over stdio. */
const factory = {
  createDebugAdapterDescriptor() {
    return new vscode.DebugAdapterExecutable(pymriPath(), ['dap']);
  },
};

/** Lets the user pick a Python process; its pid as a string, or undefined to cancel. */
async function pickProcess() {
  const json = await new Promise((resolve, reject) => {
    cp.execFile(pymriPath(), ['ps', '--json'], (error, stdout, stderr) => {
      if (error) {
        reject(new Error(`pymri ps: ${stderr || error.message}`));
      } else {
        resolve(stdout);
      }
    });
  });
  const items = JSON.parse(json).map((p) => ({
    label: `${p.pid}`,
    description: `Python ${p.python_version}${p.root ? ` in ${p.root}` : ''}`,
    detail: p.command,
    pid: String(p.pid),
  }));
  const picked = await vscode.window.showQuickPick(items, {
    placeHolder: 'The Python process to attach to',
    matchOnDescription: true,
    matchOnDetail: true,
  });
  return picked ? picked.pid : undefined;
}

function activate(context) {
  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory('pymri', factory),
    vscode.commands.registerCommand('pymri.pickProcess', pickProcess),
  );
}

function deactivate() {}

module.exports = { activate, deactivate };
