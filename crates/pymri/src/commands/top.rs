//! `pymri top PID` and `pymri top -- COMMAND`: where a process spends its time, live. The
//! samples come from the loop `record` uses ([`crate::sampling`]); this module only counts
//! them and shows the counts, full-screen on a terminal or as plain tables otherwise.

use crate::commands::family::{self, Family, WithFamily};
use crate::escape;
use crate::printer::{note, Printer};
use crate::sampling::{self, End, Mode, Observer, Opened, Schedule, Stats, Target};
use anyhow::{Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use pymri_cpython::{Frame, SampleOptions, Snapshot};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Terminal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Stdout};
use std::ops::ControlFlow;
use std::sync::{Arc, Once};
use std::time::Duration;

pub struct TopOptions {
    pub target: Target,
    /// Samples a second.
    pub rate: u32,
    /// Between two redraws, or two tables.
    pub interval: Duration,
    /// `None`: until q, Ctrl-C or the process exits.
    pub duration: Option<Duration>,
    pub mode: Mode,
    /// Line numbers in a function's row (else one row per function and file).
    pub lines: bool,
    /// Also sample every descendant that runs Python, counted with the target.
    pub subprocesses: bool,
}

/// Rows of the functions' table written when stdout is not a terminal.
const PLAIN_ROWS: usize = 40;

pub fn run(opts: TopOptions) -> Result<u8> {
    let (opened, ()) = Opened::open(&opts.target, || Ok(()))?;
    let pid = opened.pid();
    let version = opened.located.version.to_string();
    let stop = sampling::interrupt_flag()?;
    let schedule = Schedule { rate: opts.rate, duration: opts.duration };
    let tally = Tally::new(opts.mode, opts.lines, pid, opts.subprocesses);
    let title = match opts.subprocesses {
        true => format!("process {pid} (Python {version}) and its subprocesses"),
        false => format!("process {pid} (Python {version})"),
    };
    let slots = family::slots();
    let family = || opts.subprocesses.then(|| Family::new(pid, &slots));
    let mut sampler = opened.sampler();
    let options = SampleOptions::default();

    let (end, stats) = if io::stdout().is_terminal() {
        // A terminal in raw mode sends no SIGINT, and a SIGTERM left at its default would end
        // pymri with the terminal still raw: it ends the view as q does.
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))
            .context("cannot handle SIGTERM")?;
        let live = Live::new(tally, title, opts.interval, opts.rate, opts.mode)?;
        let mut observer = WithFamily::new(live, family(), options);
        let outcome = sampling::sample(&mut sampler, &options, schedule, &stop, &mut observer);
        let mut live = observer.inner;
        // The terminal is the user's again before anything else is said.
        drop(live.screen.take());
        if let Some(e) = live.failed.take() {
            return Err(e);
        }
        outcome?
    } else {
        let plain = Plain {
            tally,
            title,
            interval: opts.interval,
            rate: opts.rate,
            mode: opts.mode,
            printer: Printer::new(),
            next: opts.interval,
            failed: None,
        };
        note(&format!(
            "pymri top: sampling {} {} times a second, a table every {} s",
            plain.title,
            opts.rate,
            opts.interval.as_secs_f64()
        ));
        let mut observer = WithFamily::new(plain, family(), options);
        let outcome = sampling::sample(&mut sampler, &options, schedule, &stop, &mut observer);
        let mut plain = observer.inner;
        if let Some(e) = plain.failed.take() {
            return Err(e);
        }
        let (end, stats) = outcome?;
        // What came after the last table is not lost.
        if plain.tally.window_samples > 0 {
            plain.table(&stats)?;
        }
        (end, stats)
    };
    let why = match end {
        End::Duration => "done",
        End::Interrupted => "stopped",
        End::Exited => "the process exited",
    };
    note(&format!(
        "pymri top: {why}: {} samples in {:.2} s ({:.1}/s of {} asked, {} missed), {} errors",
        stats.samples,
        stats.elapsed.as_secs_f64(),
        stats.rate(),
        opts.rate,
        stats.missed,
        stats.errors
    ));
    drop(sampler);
    opened.finish()
}

/// A row of the functions' table: a frame as the user reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    function: String,
    file: String,
    line: Option<i32>,
}

impl Key {
    /// `function (file:line)`, inert for a terminal.
    fn describe(&self) -> String {
        let function = escape::name(&self.function);
        let file = escape::name(&self.file);
        match self.line {
            Some(line) => format!("{function} ({file}:{line})"),
            None => format!("{function} ({file})"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Stacks whose innermost frame this is.
    own: u64,
    /// Stacks this is in, once per stack however often it recurses.
    total: u64,
}

#[derive(Debug, Default)]
struct ThreadSeen {
    /// The process, when more than one is sampled.
    pid: Option<i32>,
    tid: Option<i32>,
    name: Option<String>,
    /// As of the thread's latest sample.
    state: &'static str,
    leaf: Option<Key>,
    samples: u64,
    gil: u64,
    cpu: u64,
}

/// Counts of samples: over the current interval (the percentages) and since the start (the
/// seconds).
struct Tally {
    mode: Mode,
    lines: bool,
    /// Process samples in the interval.
    window_samples: u64,
    /// Thread stacks the mode counts, in the interval and since the start.
    window_stacks: u64,
    window: HashMap<Key, Counts>,
    /// By process and `threading.get_ident()` (the same in a forked child as in its parent).
    threads: BTreeMap<(i32, u64), ThreadSeen>,
    /// The target's pid, and whether its descendants are sampled too.
    pid: i32,
    processes: bool,
    all_stacks: u64,
    all: HashMap<Key, Counts>,
    /// Reused: the functions of one stack, for its total counts.
    in_stack: HashSet<Key>,
}

impl Tally {
    fn new(mode: Mode, lines: bool, pid: i32, processes: bool) -> Tally {
        Tally {
            mode,
            lines,
            pid,
            processes,
            window_samples: 0,
            window_stacks: 0,
            window: HashMap::new(),
            threads: BTreeMap::new(),
            all_stacks: 0,
            all: HashMap::new(),
            in_stack: HashSet::new(),
        }
    }

    fn key(&self, frame: &Frame) -> Key {
        Key {
            function: frame.function.clone(),
            file: frame.file.clone(),
            line: self.lines.then_some(frame.line),
        }
    }

    /// A sample of the target (`pid` its own) or of one of its descendants.
    fn add(&mut self, pid: i32, snapshot: &Snapshot) {
        if pid == self.pid {
            self.window_samples += 1;
        }
        for thread in &snapshot.threads {
            let leaf = thread.frames.first().map(|f| self.key(f));
            let seen = self.threads.entry((pid, thread.ident)).or_default();
            seen.pid = self.processes.then_some(pid);
            seen.tid = thread.tid;
            seen.name.clone_from(&thread.name);
            seen.state = thread.state.describe();
            seen.leaf = leaf.clone();
            seen.samples += 1;
            seen.gil += u64::from(thread.holds_gil);
            seen.cpu += u64::from(thread.on_cpu == Some(true));
            let Some(leaf) = leaf else { continue };
            if !self.mode.counts(thread) {
                continue;
            }
            self.window_stacks += 1;
            self.all_stacks += 1;
            self.window.entry(leaf.clone()).or_default().own += 1;
            self.all.entry(leaf).or_default().own += 1;
            self.in_stack.clear();
            for frame in &thread.frames {
                let key = self.key(frame);
                if self.in_stack.insert(key.clone()) {
                    self.window.entry(key.clone()).or_default().total += 1;
                    self.all.entry(key).or_default().total += 1;
                }
            }
        }
    }

    /// The interval is over: its rows are made, and the next one starts from nothing.
    fn roll(&mut self, stats: &Stats) -> View {
        // A thread stack stands for the time between two process samples.
        let seconds =
            if stats.samples == 0 { 0.0 } else { stats.elapsed.as_secs_f64() / stats.samples as f64 };
        let percent = |n: u64, of: u64| if of == 0 { 0.0 } else { 100.0 * n as f64 / of as f64 };
        let functions = self
            .all
            .iter()
            .map(|(key, all)| {
                let window = self.window.get(key).copied().unwrap_or_default();
                FunctionRow {
                    text: key.describe(),
                    own: percent(window.own, self.window_stacks),
                    total: percent(window.total, self.window_stacks),
                    own_seconds: all.own as f64 * seconds,
                    total_seconds: all.total as f64 * seconds,
                }
            })
            .collect();
        let mut threads: Vec<ThreadRow> = self
            .threads
            .values()
            .map(|t| ThreadRow {
                tid: t.tid.map_or_else(|| "?".to_string(), |tid| tid.to_string()),
                name: {
                    let name = t.name.as_deref().map_or_else(String::new, |n| escape::name(n).into_owned());
                    match t.pid {
                        Some(pid) => format!("{name} (pid {pid})"),
                        None => name,
                    }
                },
                state: t.state,
                gil: percent(t.gil, t.samples),
                cpu: percent(t.cpu, t.samples),
                now_in: t.leaf.as_ref().map_or_else(String::new, Key::describe),
            })
            .collect();
        threads.sort_by(|a, b| {
            b.cpu.total_cmp(&a.cpu).then(b.gil.total_cmp(&a.gil)).then_with(|| a.tid.cmp(&b.tid))
        });
        let view = View { functions, threads, stacks: self.window_stacks };
        self.window_samples = 0;
        self.window_stacks = 0;
        self.window.clear();
        self.threads.clear();
        view
    }
}

struct FunctionRow {
    text: String,
    own: f64,
    total: f64,
    own_seconds: f64,
    total_seconds: f64,
}

struct ThreadRow {
    tid: String,
    name: String,
    state: &'static str,
    gil: f64,
    cpu: f64,
    now_in: String,
}

/// One interval's rows.
struct View {
    functions: Vec<FunctionRow>,
    threads: Vec<ThreadRow>,
    /// Thread stacks counted in the interval.
    stacks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Own,
    Total,
    OwnTime,
    TotalTime,
}

impl Column {
    const ALL: [Column; 4] = [Column::Own, Column::Total, Column::OwnTime, Column::TotalTime];

    fn title(self) -> &'static str {
        match self {
            Column::Own => "%Own",
            Column::Total => "%Total",
            Column::OwnTime => "OwnTime",
            Column::TotalTime => "TotalTime",
        }
    }

    fn value(self, row: &FunctionRow) -> f64 {
        match self {
            Column::Own => row.own,
            Column::Total => row.total,
            Column::OwnTime => row.own_seconds,
            Column::TotalTime => row.total_seconds,
        }
    }
}

/// How the functions are ordered and which are shown.
struct Order {
    column: Column,
    ascending: bool,
    /// Rows whose text holds this (case ignored), when not empty.
    filter: String,
}

impl Order {
    /// The rows to show, in order.
    fn rows<'v>(&self, view: &'v View) -> Vec<&'v FunctionRow> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&FunctionRow> = view
            .functions
            .iter()
            .filter(|r| needle.is_empty() || r.text.to_lowercase().contains(&needle))
            .collect();
        rows.sort_by(|a, b| {
            let by = self.column.value(a).total_cmp(&self.column.value(b));
            let by = if self.ascending { by } else { by.reverse() };
            // Ties: the busier over the whole run first, then by name, so rows do not jump.
            by.then(b.total_seconds.total_cmp(&a.total_seconds)).then_with(|| a.text.cmp(&b.text))
        });
        rows
    }
}

fn header(title: &str, stats: &Stats, rate: u32, mode: Mode, threads: usize) -> String {
    format!(
        "pymri top: {title}, {:.1} s: {} samples ({:.1}/s of {rate} asked), {} missed, {} errors; {threads} threads; mode {}",
        stats.elapsed.as_secs_f64(),
        stats.samples,
        stats.rate(),
        stats.missed,
        stats.errors,
        mode_name(mode)
    )
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Wall => "wall",
        Mode::Cpu => "cpu",
        Mode::Gil => "gil",
    }
}

/// Plain tables on stdout, one every interval.
struct Plain {
    tally: Tally,
    title: String,
    interval: Duration,
    rate: u32,
    mode: Mode,
    printer: Printer,
    /// When (since the start) the next table is due.
    next: Duration,
    failed: Option<anyhow::Error>,
}

impl Plain {
    fn table(&mut self, stats: &Stats) -> Result<()> {
        let view = self.tally.roll(stats);
        let order = Order { column: Column::Own, ascending: false, filter: String::new() };
        let mut out = String::new();
        let _ = writeln!(out, "{}", header(&self.title, stats, self.rate, self.mode, view.threads.len()));
        let _ = writeln!(
            out,
            "{:>6} {:>6} {:>8} {:>9}  Function (file:line)",
            "%Own", "%Total", "OwnTime", "TotalTime"
        );
        let rows = order.rows(&view);
        for row in rows.iter().take(PLAIN_ROWS) {
            let _ = writeln!(
                out,
                "{:>6.1} {:>6.1} {:>7.2}s {:>8.2}s  {}",
                row.own, row.total, row.own_seconds, row.total_seconds, row.text
            );
        }
        if rows.len() > PLAIN_ROWS {
            let _ = writeln!(out, "({} more)", rows.len() - PLAIN_ROWS);
        }
        let _ = writeln!(
            out,
            "{:>8} {:>5} {:>5}  {:<20} {:<16} Now in",
            "TID", "%GIL", "%CPU", "State", "Thread"
        );
        for t in &view.threads {
            let _ = writeln!(
                out,
                "{:>8} {:>5.1} {:>5.1}  {:<20} {:<16} {}",
                t.tid, t.gil, t.cpu, t.state, t.name, t.now_in
            );
        }
        out.push('\n');
        self.printer.write_str(&out)?;
        self.printer.flush()
    }
}

impl Observer for Plain {
    fn snapshot(&mut self, snapshot: &Snapshot) {
        self.tally.add(self.tally.pid, snapshot);
    }

    fn member(&mut self, pid: i32, _label: &str, snapshot: &Snapshot) {
        self.tally.add(pid, snapshot);
    }

    fn tick(&mut self, stats: &Stats) -> ControlFlow<()> {
        if stats.elapsed < self.next {
            return ControlFlow::Continue(());
        }
        while self.next <= stats.elapsed {
            self.next += self.interval;
        }
        match self.table(stats) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.failed = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// The full-screen view.
struct Live {
    screen: Option<Screen>,
    tally: Tally,
    title: String,
    interval: Duration,
    rate: u32,
    mode: Mode,
    view: View,
    order: Order,
    threads: bool,
    paused: bool,
    /// Typing a filter.
    editing: bool,
    /// Clear the screen before the next draw (Ctrl-L).
    repaint: bool,
    next: Duration,
    latest: Stats,
    failed: Option<anyhow::Error>,
}

impl Live {
    fn new(tally: Tally, title: String, interval: Duration, rate: u32, mode: Mode) -> Result<Live> {
        let mut live = Live {
            screen: Some(Screen::enter()?),
            tally,
            title,
            interval,
            rate,
            mode,
            view: View { functions: Vec::new(), threads: Vec::new(), stacks: 0 },
            order: Order { column: Column::Own, ascending: false, filter: String::new() },
            threads: false,
            paused: false,
            editing: false,
            repaint: false,
            next: interval,
            latest: Stats::default(),
            failed: None,
        };
        live.draw()?;
        Ok(live)
    }

    /// What a key does; `Break` quits.
    fn key(&mut self, key: KeyEvent) -> ControlFlow<()> {
        if key.modifiers.contains(KeyModifiers::CONTROL) {
            match key.code {
                KeyCode::Char('c') => return ControlFlow::Break(()),
                // What a started program wrote over the view goes at the next full redraw.
                KeyCode::Char('l') => self.repaint = true,
                _ => {}
            }
            return ControlFlow::Continue(());
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.order.filter.clear();
                }
                KeyCode::Backspace => {
                    self.order.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() => self.order.filter.push(c),
                _ => {}
            }
            return ControlFlow::Continue(());
        }
        match key.code {
            KeyCode::Char('q') => return ControlFlow::Break(()),
            KeyCode::Char(c @ '1'..='4') => {
                let column = Column::ALL[usize::from(c as u8 - b'1')];
                self.order.ascending = self.order.column == column && !self.order.ascending;
                self.order.column = column;
            }
            KeyCode::Char('t') => self.threads = !self.threads,
            KeyCode::Char('f') => self.threads = false,
            KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Esc => self.order.filter.clear(),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn draw(&mut self) -> Result<()> {
        let Some(screen) = self.screen.as_mut() else { return Ok(()) };
        if std::mem::take(&mut self.repaint) {
            // Not `Terminal::clear`, which asks the terminal where its cursor is and fails on
            // one that does not answer. The screen is cleared, then an empty frame makes
            // ratatui forget what it drew, so the next one is drawn whole.
            crossterm::execute!(io::stdout(), terminal::Clear(terminal::ClearType::All))
                .context("cannot draw on the terminal")?;
            screen.terminal.draw(|_| {}).context("cannot draw on the terminal")?;
        }
        let view = &self.view;
        let stats = &self.latest;
        let mut top = header(&self.title, stats, self.rate, self.mode, view.threads.len());
        if self.paused {
            top.push_str("  [paused]");
        }
        let second = if self.editing {
            format!("filter: {}_", escape::name(&self.order.filter))
        } else if !self.order.filter.is_empty() {
            format!("filter: {}  (Esc clears it)", escape::name(&self.order.filter))
        } else {
            format!(
                "{} thread stacks in the last interval ({} s); times since the start",
                view.stacks,
                self.interval.as_secs_f64()
            )
        };
        let keys = "1-4 sort  t threads  f functions  space pause  / filter  q quit";
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let table = if self.threads {
            let rows = view.threads.iter().map(|t| {
                Row::new(vec![
                    Cell::from(t.tid.clone()),
                    Cell::from(format!("{:.1}", t.gil)),
                    Cell::from(format!("{:.1}", t.cpu)),
                    Cell::from(t.state),
                    Cell::from(t.name.clone()),
                    Cell::from(t.now_in.clone()),
                ])
            });
            Table::new(
                rows,
                [
                    Constraint::Length(8),
                    Constraint::Length(6),
                    Constraint::Length(6),
                    Constraint::Length(20),
                    Constraint::Length(16),
                    Constraint::Min(10),
                ],
            )
            .header(Row::new(["TID", "%GIL", "%CPU", "State", "Thread", "Now in"]).style(bold))
        } else {
            let rows = self.order.rows(view).into_iter().map(|r| {
                Row::new(vec![
                    Cell::from(format!("{:>6.1}", r.own)),
                    Cell::from(format!("{:>6.1}", r.total)),
                    Cell::from(format!("{:>7.2}s", r.own_seconds)),
                    Cell::from(format!("{:>8.2}s", r.total_seconds)),
                    Cell::from(r.text.clone()),
                ])
            });
            let titles = Column::ALL.map(|c| {
                let mark = match (c == self.order.column, self.order.ascending) {
                    (false, _) => "",
                    (true, false) => "v",
                    (true, true) => "^",
                };
                format!("{mark}{}", c.title())
            });
            let mut header: Vec<String> = titles.to_vec();
            header.push("Function (file:line)".to_string());
            Table::new(
                rows,
                [
                    Constraint::Length(7),
                    Constraint::Length(7),
                    Constraint::Length(9),
                    Constraint::Length(10),
                    Constraint::Min(10),
                ],
            )
            .header(Row::new(header).style(bold))
        };
        screen
            .terminal
            .draw(|frame| {
                let [head, sub, body, foot] = Layout::vertical([
                    Constraint::Length(1),
                    Constraint::Length(1),
                    Constraint::Min(1),
                    Constraint::Length(1),
                ])
                .areas(frame.area());
                frame.render_widget(Paragraph::new(Line::from(top)), head);
                frame.render_widget(Paragraph::new(Line::from(second)), sub);
                frame.render_widget(table, body);
                frame.render_widget(Paragraph::new(Line::from(keys)), foot);
            })
            .context("cannot draw on the terminal")?;
        Ok(())
    }

    fn step(&mut self, stats: &Stats) -> Result<ControlFlow<()>> {
        let mut redraw = false;
        while event::poll(Duration::ZERO).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    if self.key(key).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    redraw = true;
                }
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
        if stats.elapsed >= self.next {
            while self.next <= stats.elapsed {
                self.next += self.interval;
            }
            self.latest = stats.clone();
            if !self.paused {
                self.view = self.tally.roll(stats);
            }
            redraw = true;
        }
        if redraw {
            self.draw()?;
        }
        Ok(ControlFlow::Continue(()))
    }
}

impl Observer for Live {
    fn snapshot(&mut self, snapshot: &Snapshot) {
        if !self.paused {
            self.tally.add(self.tally.pid, snapshot);
        }
    }

    fn member(&mut self, pid: i32, _label: &str, snapshot: &Snapshot) {
        if !self.paused {
            self.tally.add(pid, snapshot);
        }
    }

    fn tick(&mut self, stats: &Stats) -> ControlFlow<()> {
        match self.step(stats) {
            Ok(flow) => flow,
            Err(e) => {
                self.failed = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

/// The terminal in raw mode on its alternate screen, given back as it was when dropped, and
/// by a panic.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode().context("cannot set up the terminal")?;
        let entered = crossterm::execute!(io::stdout(), EnterAlternateScreen)
            .map_err(anyhow::Error::new)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())).map_err(anyhow::Error::new));
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(e.context("cannot set up the terminal"))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}
