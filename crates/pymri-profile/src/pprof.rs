//! pprof's format: a `perftools.profiles.Profile` protobuf message, gzipped; what
//! `go tool pprof`, Grafana Pyroscope and other continuous profilers read.
//!
//! Each sample has two values: how many times its stack was seen (`samples`/`count`) and, when
//! sampling was on a schedule, that many intervals of time (`wall`/`nanoseconds`, or the
//! profile's other [`clock`](crate::Profile::clock)). A
//! location is one frame (function, file, line); a function is a name in a file. With
//! [`Options::split_threads`](crate::Options) each thread's stacks are separate samples with a
//! `thread` label; without, threads are merged.

use crate::{Profile, Writer};
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::UNIX_EPOCH;

/// A pprof file (gzipped protobuf).
pub struct Pprof;

// The messages of pprof's profile.proto that pymri writes, field numbers as the format
// defines them. Strings are indices into `string_table`, whose first entry is "".

#[derive(Clone, PartialEq, Message)]
struct ProfileMessage {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    time_nanos: i64,
    #[prost(int64, tag = "10")]
    duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    period: i64,
}

#[derive(Clone, PartialEq, Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
    #[prost(int64, tag = "2")]
    unit: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    /// Innermost first.
    #[prost(uint64, repeated, tag = "1")]
    location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(int64, tag = "1")]
    key: i64,
    #[prost(int64, tag = "2")]
    str: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Location {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(message, repeated, tag = "4")]
    line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
struct Line {
    #[prost(uint64, tag = "1")]
    function_id: u64,
    #[prost(int64, tag = "2")]
    line: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Function {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(int64, tag = "2")]
    name: i64,
    // No system name (field 3): pprof readers run a name equal to its system name through a
    // C++ demangler, which makes `<module>` an empty name.
    #[prost(int64, tag = "4")]
    filename: i64,
}

/// The string table under construction.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

fn saturating_i64(n: u128) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The profile as a pprof message.
fn message(profile: &Profile) -> ProfileMessage {
    let mut strings = Strings::new();
    let mut sample_type = vec![ValueType { r#type: strings.get("samples"), unit: strings.get("count") }];
    let interval = profile.interval.map(|i| saturating_i64(i.as_nanos()));
    let time = ValueType { r#type: strings.get(&profile.clock), unit: strings.get("nanoseconds") };
    if interval.is_some() {
        sample_type.push(time.clone());
    }

    let mut function = Vec::new();
    let mut function_ids: HashMap<(&str, &str), u64> = HashMap::new();
    // Location N + 1 is frame N of the profile.
    let location = profile
        .frames()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let next = function.len() as u64 + 1;
            let function_id =
                *function_ids.entry((f.function.as_str(), f.file.as_str())).or_insert_with(|| {
                    function.push(Function {
                        id: next,
                        name: strings.get(&f.function),
                        filename: strings.get(&f.file),
                    });
                    next
                });
            Location {
                id: i as u64 + 1,
                line: vec![Line { function_id, line: i64::from(f.line.unwrap_or(0)) }],
            }
        })
        .collect();

    let values = |count: u64| {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut v = vec![count];
        if let Some(ns) = interval {
            v.push(count.saturating_mul(ns));
        }
        v
    };
    let locations = |frames: &[u32]| frames.iter().rev().map(|&f| u64::from(f) + 1).collect::<Vec<u64>>();
    let mut sample = Vec::new();
    if profile.options.split_threads {
        let key = strings.get("thread");
        for t in profile.threads() {
            let label = vec![Label { key, str: strings.get(&t.thread.label()) }];
            for (frames, count) in t.stacks() {
                sample.push(Sample {
                    location_id: locations(frames),
                    value: values(count),
                    label: label.clone(),
                });
            }
        }
    } else {
        let mut merged: Vec<(&[u32], u64)> = Vec::new();
        let mut at: HashMap<&[u32], usize> = HashMap::new();
        for t in profile.threads() {
            for (frames, count) in t.stacks() {
                match at.get(frames) {
                    Some(&i) => merged[i].1 += count,
                    None => {
                        at.insert(frames, merged.len());
                        merged.push((frames, count));
                    }
                }
            }
        }
        sample = merged
            .into_iter()
            .map(|(frames, count)| Sample {
                location_id: locations(frames),
                value: values(count),
                label: Vec::new(),
            })
            .collect();
    }

    let time_nanos =
        profile.started_at().duration_since(UNIX_EPOCH).map_or(0, |d| saturating_i64(d.as_nanos()));
    ProfileMessage {
        sample_type,
        sample,
        location,
        function,
        string_table: strings.table,
        time_nanos,
        duration_nanos: saturating_i64(profile.duration().as_nanos()),
        period_type: interval.map(|_| time),
        period: interval.unwrap_or(0),
    }
}

impl Writer for Pprof {
    fn extension(&self) -> &'static str {
        "pb.gz"
    }

    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let mut gz = GzEncoder::new(out, Compression::default());
        gz.write_all(&message(profile).encode_to_vec())?;
        gz.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{frame, sample_profile, thread};
    use crate::Options;
    use flate2::read::GzDecoder;
    use std::io::Read;

    /// Written, gunzipped and decoded again.
    fn read_back(profile: &Profile) -> ProfileMessage {
        let mut out = Vec::new();
        Pprof.write(profile, &mut out).expect("write");
        assert_eq!(&out[..2], [0x1f, 0x8b], "gzip");
        let mut raw = Vec::new();
        GzDecoder::new(&out[..]).read_to_end(&mut raw).expect("gunzip");
        ProfileMessage::decode(&raw[..]).expect("protobuf")
    }

    /// Each sample as (frames `function (file:line)` root first, values, labels `key=value`).
    fn samples(p: &ProfileMessage) -> Vec<(Vec<String>, Vec<i64>, Vec<String>)> {
        let s = |i: i64| p.string_table[i as usize].clone();
        p.sample
            .iter()
            .map(|sample| {
                let frames = sample
                    .location_id
                    .iter()
                    .rev()
                    .map(|&id| {
                        let loc = p.location.iter().find(|l| l.id == id).expect("location");
                        let line = &loc.line[0];
                        let f = p.function.iter().find(|f| f.id == line.function_id).expect("function");
                        format!("{} ({}:{})", s(f.name), s(f.filename), line.line)
                    })
                    .collect();
                let labels = sample.label.iter().map(|l| format!("{}={}", s(l.key), s(l.str))).collect();
                (frames, sample.value.clone(), labels)
            })
            .collect()
    }

    fn names(frames: &[&str]) -> Vec<String> {
        frames.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn samples_and_wall_time_over_merged_threads() {
        let p = read_back(&sample_profile(Options::default()));
        assert_eq!(p.string_table[0], "");
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (p.string_table[t.r#type as usize].as_str(), p.string_table[t.unit as usize].as_str()))
            .collect();
        assert_eq!(types, [("samples", "count"), ("wall", "nanoseconds")]);
        assert_eq!(p.period, 10_000_000);
        assert!(p.time_nanos > 0);
        let samples = samples(&p);
        assert_eq!(samples.len(), 4, "{samples:?}");
        assert_eq!(
            samples[0],
            (
                names(&["<module> (app.py:30)", "run (app.py:20)", "hot (app.py:5)"]),
                vec![3, 30_000_000],
                vec![]
            )
        );
        let total: i64 = samples.iter().map(|(_, v, _)| v[0]).sum();
        assert_eq!(total, 6);
        // One function for `run`, seen at two lines: two locations.
        let run: Vec<&Function> =
            p.function.iter().filter(|f| p.string_table[f.name as usize] == "run").collect();
        assert_eq!(run.len(), 1);
        assert_eq!(p.location.iter().filter(|l| l.line[0].function_id == run[0].id).count(), 2);
    }

    #[test]
    fn split_by_thread_every_sample_has_a_thread_label() {
        let p = read_back(&sample_profile(Options { lines: false, split_threads: true }));
        let samples = samples(&p);
        assert_eq!(
            samples.last().expect("a sample"),
            &(
                names(&["<module> (app.py:0)", "wait (app.py:0)"]),
                vec![2, 20_000_000],
                vec!["thread=thread MainThread (10)".to_string()]
            )
        );
        assert!(samples.iter().all(|(_, _, l)| l.len() == 1), "{samples:?}");
    }

    #[test]
    fn the_time_is_named_after_the_clock() {
        let mut profile = sample_profile(Options::default());
        profile.clock = "cpu".into();
        let p = read_back(&profile);
        let name = |t: &ValueType| p.string_table[t.r#type as usize].as_str();
        assert_eq!(name(&p.sample_type[1]), "cpu");
        assert_eq!(p.period_type.as_ref().map(name), Some("cpu"));
    }

    #[test]
    fn the_same_stack_in_two_threads_is_one_sample_when_merged() {
        let mut profile = Profile::new("t", None, Options::default());
        profile.add(&thread(1, "a"), [frame("f", 1)].iter());
        profile.add(&thread(2, "b"), [frame("f", 1)].iter());
        let p = read_back(&profile);
        assert_eq!(p.sample_type.len(), 1, "no interval, no wall time");
        assert_eq!(p.period_type, None);
        assert_eq!(samples(&p), [(names(&["f (app.py:1)"]), vec![2], vec![])]);
    }

    #[test]
    fn names_are_kept_exactly() {
        let mut profile = Profile::new("t", None, Options { lines: true, split_threads: true });
        let hostile = "f\0\n\u{202e}\"\x1b]0;x\x07";
        profile.add(&thread(1, "a\nb"), [frame(hostile, 1)].iter());
        let p = read_back(&profile);
        assert_eq!(
            samples(&p),
            [(vec![format!("{hostile} (app.py:1)")], vec![1], vec!["thread=thread a\nb (1)".to_string()])]
        );
    }

    #[test]
    fn an_empty_profile_is_a_valid_file() {
        let p = read_back(&Profile::new("t", None, Options::default()));
        assert!(p.sample.is_empty() && p.location.is_empty());
    }
}
