//! Line editing (rustyline) with a history file and tab completion: command names, and the
//! names visible in the selected frame (the agent's `completions` request).
//!
//! History lives in `$XDG_STATE_HOME/pymri/history` (default `~/.local/state/pymri/history`).
//! When stdin is not a terminal, lines are read plainly and the prompt is still printed, so a
//! tool driving pymri through pipes sees `(Pdb) ` as it would with pdb.

use super::commands;
use pymri_session::protocol::requests::Completions;
use pymri_session::Session;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, History};
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What reading a line gave.
pub(crate) enum Input {
    Line(String),
    /// Ctrl-C: the line is abandoned.
    Interrupted,
    /// Ctrl-D on an empty line, or the end of stdin.
    Eof,
}

pub(crate) struct LineEditor {
    editor: Option<Editor<ReplHelper, DefaultHistory>>,
    history: Option<PathBuf>,
    /// No input at all (the web console's REPL): every read is the end of input.
    closed: bool,
}

/// Where the history file lives, per the XDG base directory specification.
fn history_path() -> Option<PathBuf> {
    let state = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".local/state"),
    };
    Some(state.join("pymri").join("history"))
}

impl LineEditor {
    pub(crate) fn new(session: Arc<Session>) -> anyhow::Result<LineEditor> {
        if !io::stdin().is_terminal() {
            return Ok(LineEditor { editor: None, history: None, closed: false });
        }
        let config = Config::builder()
            .completion_type(CompletionType::List)
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .max_history_size(10_000)?
            .build();
        let mut editor = Editor::with_config(config)?;
        editor.set_helper(Some(ReplHelper { session }));
        let history = history_path();
        if let Some(path) = &history {
            // A missing or unreadable history is not worth a message.
            let _ = editor.load_history(path);
        }
        Ok(LineEditor { editor: Some(editor), history, closed: false })
    }

    /// An editor with nothing to read (commands come from elsewhere, one at a time).
    pub(crate) fn closed() -> LineEditor {
        LineEditor { editor: None, history: None, closed: true }
    }

    pub(crate) fn read(&mut self, prompt: &str) -> Input {
        if self.closed {
            return Input::Eof;
        }
        let Some(editor) = &mut self.editor else { return read_plain(prompt) };
        match editor.readline(prompt) {
            Ok(line) => Input::Line(line),
            Err(ReadlineError::Interrupted) => Input::Interrupted,
            Err(_) => Input::Eof,
        }
    }

    pub(crate) fn add_history(&mut self, line: &str) {
        if let Some(editor) = &mut self.editor {
            if !line.trim().is_empty() {
                let _ = editor.add_history_entry(line);
            }
        }
    }

    pub(crate) fn save_history(&mut self) {
        let (Some(editor), Some(path)) = (&mut self.editor, &self.history) else { return };
        if editor.history().is_empty() {
            return;
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(path);
    }
}

fn read_plain(prompt: &str) -> Input {
    let mut stdout = io::stdout();
    let _ = stdout.write_all(prompt.as_bytes());
    let _ = stdout.flush();
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => Input::Eof,
        Ok(_) => Input::Line(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

pub(crate) struct ReplHelper {
    session: Arc<Session>,
}

/// Commands whose argument is Python (completed with the frame's names).
const EXPRESSION_COMMANDS: &[&str] =
    &["p", "pp", "display", "undisplay", "whatis", "b", "break", "tbreak", "condition", "interact"];

impl ReplHelper {
    /// Names completing the end of `text` in the selected frame: (byte offset in `text`, names).
    fn frame_completions(&self, text: &str) -> Option<(usize, Vec<String>)> {
        let sel = self.session.state().selection()?;
        let request = Completions { thread: sel.thread, frame: sel.frame, text: text.to_string() };
        let body = self.session.request_with_timeout(&request, Some(Duration::from_secs(5))).ok()?;
        // The agent counts characters (Python indices); rustyline wants bytes.
        let start = text.char_indices().nth(body.start).map_or(text.len(), |(i, _)| i);
        // rustyline shows candidates and inserts them in the line as they are: a name the target
        // chose with control or invisible characters in it is left out, not sent to the terminal.
        let matches = body.matches.into_iter().filter(|m| crate::escape::is_inert(m)).collect();
        Some((start, matches))
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let pair = |s: String| Pair { display: s.clone(), replacement: s };
        if let Some(statement) = before.strip_prefix('!') {
            let Some((start, names)) = self.frame_completions(statement) else {
                return Ok((pos, Vec::new()));
            };
            return Ok((1 + start, names.into_iter().map(pair).collect()));
        }
        let first_end = before.find(char::is_whitespace);
        let Some(first_end) = first_end else {
            // The first word: a command name, or the start of a Python expression.
            let mut names: Vec<String> = commands::all_names()
                .into_iter()
                .filter(|n| n.starts_with(before))
                .map(|n| n.to_string())
                .collect();
            let word_start =
                before.rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')).map_or(0, |i| i + 1);
            if word_start == 0 && !before.contains('.') && !names.is_empty() {
                if let Some((_, more)) = self.frame_completions(before) {
                    names.extend(more);
                }
                names.sort();
                names.dedup();
                return Ok((0, names.into_iter().map(pair).collect()));
            }
            let Some((start, more)) = self.frame_completions(before) else { return Ok((pos, Vec::new())) };
            return Ok((start, more.into_iter().map(pair).collect()));
        };
        let word = &before[..first_end];
        let python = EXPRESSION_COMMANDS.contains(&word) || commands::find(word).is_none();
        if !python {
            return Ok((pos, Vec::new()));
        }
        let offset = if commands::find(word).is_some() {
            first_end + (before[first_end..].len() - before[first_end..].trim_start().len())
        } else {
            0
        };
        let Some((start, names)) = self.frame_completions(&before[offset..]) else {
            return Ok((pos, Vec::new()));
        };
        Ok((offset + start, names.into_iter().map(pair).collect()))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}
