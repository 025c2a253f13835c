//! Collapsed (folded) stacks: one line per stack, root first, frames joined by `;`, then a
//! space and the count; what `flamegraph.pl`, `inferno` and speedscope read.

use crate::{Profile, Writer};
use std::borrow::Cow;
use std::io::{self, Write};

/// The collapsed stack format.
pub struct Collapsed;

impl Writer for Collapsed {
    fn extension(&self) -> &'static str {
        "txt"
    }

    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        for line in lines(profile) {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

/// The lines of the format, without their newlines.
pub(crate) fn lines(profile: &Profile) -> Vec<String> {
    profile
        .folded()
        .into_iter()
        .map(|(stack, count)| {
            let frames: Vec<Cow<'_, str>> = stack.iter().map(|f| frame(f)).collect();
            format!("{} {count}", frames.join(";"))
        })
        .collect()
}

/// The format has no quoting: a `;` would split a frame in two and a line break would end the
/// stack, so those are written as escapes.
fn frame(name: &str) -> Cow<'_, str> {
    if !name.contains([';', '\n', '\r']) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.replace(';', "\\x3b").replace('\n', "\\n").replace('\r', "\\r"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{frame as f, sample_profile, thread};
    use crate::{Options, Profile};

    fn text(profile: &Profile) -> String {
        let mut out = Vec::new();
        Collapsed.write(profile, &mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn collapsed_stacks() {
        insta::assert_snapshot!(text(&sample_profile(Options::default())));
    }

    #[test]
    fn collapsed_stacks_split_by_thread_without_lines() {
        insta::assert_snapshot!(text(&sample_profile(Options { lines: false, split_threads: true })));
    }

    #[test]
    fn threads_merge_into_the_same_stacks() {
        let mut p = Profile::new("t", None, Options::default());
        p.add(&thread(1, "a"), [f("f", 1)].iter());
        p.add(&thread(2, "b"), [f("f", 1)].iter());
        assert_eq!(text(&p), "f (app.py:1) 2\n");
    }

    #[test]
    fn separators_inside_names_are_escaped() {
        let mut p = Profile::new("t", None, Options::default());
        p.add(&thread(1, "a"), [f("a;b\nc", 1), f("outer", 2)].iter());
        assert_eq!(text(&p), "outer (app.py:2);a\\x3bb\\nc (app.py:1) 1\n");
    }
}
