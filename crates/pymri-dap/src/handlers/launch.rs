//! `launch`: start the program with the agent inside it (`pymri-launch`), its stdout and stderr
//! piped to the client as `output` events. It starts running at `configurationDone`.

use super::Handler;
use crate::adapter::Adapter;
use crate::debuggee::{Launched, Origin};
use crate::error::{with_causes, DapError};
use crate::paths::PathMap;
use crate::types::{Empty, LaunchArguments, StringOrList};
use pymri_launch::{LaunchOptions, Program, Streams};
use std::path::{Path, PathBuf};

pub(crate) struct Launch;

impl Handler for Launch {
    const COMMAND: &'static str = "launch";
    type Arguments = LaunchArguments;
    type Body = Empty;

    fn handle(adapter: &mut Adapter, args: LaunchArguments) -> Result<Empty, DapError> {
        if adapter.debuggee.is_some() {
            return Err(DapError::AlreadyDebugging);
        }
        let program = match (args.program, args.module) {
            (Some(script), None) => Program::Script(script),
            (None, Some(module)) => Program::Module(module),
            (Some(_), Some(_)) => {
                return Err(DapError::User(
                    "give either \"program\" (a script) or \"module\", not both".into(),
                ))
            }
            (None, None) => {
                return Err(DapError::User(
                    "\"launch\" needs \"program\" (the script to run) or \"module\" (run like python -m)"
                        .into(),
                ))
            }
        };
        let mut options = LaunchOptions::new(program);
        let mut python = args.python.map(StringOrList::into_vec).unwrap_or_default().into_iter();
        options.python = python.next().filter(|p| !p.is_empty()).map(PathBuf::from);
        options.python_args = python.chain(args.python_args).collect();
        options.root = args.root.filter(|r| !r.is_empty()).map(PathBuf::from);
        options.cwd = args.cwd.filter(|c| !c.is_empty()).map(PathBuf::from);
        options.args = match args.args {
            Some(StringOrList::One(line)) => line.split_whitespace().map(str::to_string).collect(),
            Some(StringOrList::Many(list)) => list,
            None => Vec::new(),
        };
        // Output goes through pipes, which Python buffers in blocks: unbuffered, the client
        // shows each print when it happens. The user's own setting wins.
        options.env.push(("PYTHONUNBUFFERED".into(), Some("1".into())));
        options.env.extend(args.env);
        options.streams = Streams::Pipe;
        // The adapter's loop thread (which runs this handler) lives as long as the client; if
        // the adapter dies, the program goes with it rather than running on unseen.
        options.kill_with_parent = true;

        let launched = pymri_launch::launch(&options).map_err(|e| DapError::User(with_causes(&e)))?;
        let epoch = adapter.next_epoch();
        let mut paths = PathMap::new(&args.path_mappings);
        if launched.process.root != Path::new("/") {
            paths.push(&launched.process.root, Path::new("/"));
        }
        if let Some(console) = args.console.filter(|c| c != "internalConsole") {
            adapter.console(&format!(
                "pymri: \"console\": \"{console}\" is not supported; the program's output is shown here"
            ));
        }
        if args.no_debug {
            adapter.console("pymri: \"noDebug\" is not supported; the program runs under the debugger");
        }
        let process = Launched::new(launched.process, epoch, &adapter.tx);
        let origin = Origin::Launch(Box::new(process));
        adapter.begin(epoch, launched.session, origin, paths, args.stop_on_entry);
        Ok(Empty {})
    }
}
