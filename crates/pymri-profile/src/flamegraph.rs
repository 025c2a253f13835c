//! Flame graphs: an interactive SVG drawn by `inferno` from the collapsed stacks.

use crate::{collapsed, Profile, Writer};
use inferno::flamegraph::{self, Options};
use std::io::{self, Write};

/// A flame graph as SVG.
pub struct Flamegraph;

impl Writer for Flamegraph {
    fn extension(&self) -> &'static str {
        "svg"
    }

    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let lines = collapsed::lines(profile);
        let mut options = Options::default();
        options.title = profile.name.clone();
        options.count_name = "samples".into();
        if lines.is_empty() {
            // inferno refuses an empty input; an empty profile is still a valid file.
            return write!(
                out,
                "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" height=\"60\" \
                 xmlns=\"http://www.w3.org/2000/svg\"><text x=\"600\" y=\"30\" text-anchor=\"middle\">No \
                 samples</text></svg>\n"
            );
        }
        flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{frame, sample_profile, thread};

    fn svg(profile: &Profile) -> String {
        let mut out = Vec::new();
        Flamegraph.write(profile, &mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn the_svg_names_every_function() {
        let svg = svg(&sample_profile(crate::Options::default()));
        assert!(svg.starts_with("<?xml"), "{svg}");
        for name in ["hot (app.py:5)", "cold (app.py:9)", "wait (app.py:40)", "&lt;module&gt; (app.py:30)"] {
            assert!(svg.contains(name), "{name} missing");
        }
        assert!(svg.contains("3 samples"), "hot's count");
    }

    #[test]
    fn markup_in_names_is_escaped() {
        let mut p = Profile::new("t", None, crate::Options::default());
        p.add(&thread(1, "a"), [frame("<script>alert(1)</script>", 1)].iter());
        let svg = svg(&p);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn an_empty_profile_is_an_svg() {
        let svg = svg(&Profile::new("t", None, crate::Options::default()));
        assert!(svg.contains("<svg") && svg.contains("No samples"), "{svg}");
    }
}
