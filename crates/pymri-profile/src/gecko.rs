//! The Firefox Profiler's processed profile format, written by `fxprof-processed-profile`: one
//! process, one profiler thread per thread sampled.
//!
//! A distinct stack is one sample weighted by its count, stamped with the time it was first
//! seen: the call tree and flame graph are exact, the timeline shows when each stack appeared.

use crate::{frame_name, Profile, Writer};
use fx::{
    CategoryColor, CpuDelta, Frame, FrameFlags, FrameInfo, ReferenceTimestamp, SamplingInterval, Timestamp,
};
use fxprof_processed_profile as fx;
use std::io::{self, Write};
use std::time::Duration;

/// A Firefox Profiler JSON file.
pub struct Gecko;

/// The interval declared when sampling was not on a schedule, in milliseconds.
const UNSCHEDULED_MS: u64 = 1;

impl Writer for Gecko {
    fn extension(&self) -> &'static str {
        "gecko.json"
    }

    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        let interval = match profile.interval {
            Some(i) => SamplingInterval::from_nanos(u64::try_from(i.as_nanos()).unwrap_or(u64::MAX)),
            None => SamplingInterval::from_millis(UNSCHEDULED_MS),
        };
        let mut gecko = fx::Profile::new(
            &profile.name,
            ReferenceTimestamp::from_system_time(profile.started_at()),
            interval,
        );
        let python = gecko.add_category("Python", CategoryColor::Yellow);
        let start = Timestamp::from_nanos_since_reference(0);
        let pid = profile.pid.unwrap_or(0);
        let process = gecko.add_process(&profile.name, pid, start);
        gecko.set_process_end_time(process, timestamp(profile.duration()));
        let names: Vec<String> = profile.frames().iter().map(frame_name).collect();
        for t in profile.threads() {
            // A thread without a kernel id is written as tid 0; the library makes a repeated id
            // unique (`0.1`, `0.2`).
            let tid = t.thread.tid.and_then(|tid| u32::try_from(tid).ok()).unwrap_or(0);
            // Not marked main: the library would name a main thread after its process, and every
            // thread is to be named as in the other formats.
            let thread = gecko.add_thread(process, tid, start, false);
            gecko.set_thread_name(thread, &t.thread.label());
            for entry in t.entries() {
                let frames: Vec<FrameInfo> = entry
                    .frames
                    .iter()
                    .map(|&i| FrameInfo {
                        frame: Frame::Label(gecko.intern_string(&names[i as usize])),
                        category_pair: python.into(),
                        flags: FrameFlags::empty(),
                    })
                    .collect();
                let stack = gecko.intern_stack_frames(thread, frames.into_iter());
                let at = timestamp(entry.first_seen);
                for weight in weights(entry.count) {
                    gecko.add_sample(thread, at, stack, CpuDelta::ZERO, weight);
                }
            }
        }
        serde_json::to_writer(&mut *out, &gecko).map_err(io::Error::other)?;
        writeln!(out)
    }
}

/// The format's weights are i32: a larger count is written as several samples.
fn weights(count: u64) -> impl Iterator<Item = i32> {
    let full = count / i32::MAX as u64;
    let rest = (count % i32::MAX as u64) as i32;
    std::iter::repeat_n(i32::MAX, full as usize).chain((rest > 0).then_some(rest))
}

fn timestamp(since_start: Duration) -> Timestamp {
    Timestamp::from_nanos_since_reference(u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{frame, sample_profile, thread};
    use crate::Options;
    use serde_json::Value;

    fn json(profile: &Profile) -> Value {
        let mut out = Vec::new();
        Gecko.write(profile, &mut out).expect("write");
        serde_json::from_slice(&out).expect("JSON")
    }

    /// Every sample of a thread as (frame names root first, weight), read back through the
    /// processed format's tables.
    fn samples(thread: &Value) -> Vec<(Vec<String>, i64)> {
        let strings = thread["stringArray"].as_array().expect("stringArray");
        let funcs = &thread["funcTable"];
        let frames = &thread["frameTable"];
        let stacks = &thread["stackTable"];
        let table = &thread["samples"];
        let n = table["length"].as_u64().expect("samples.length") as usize;
        let weights = table["weight"].as_array().expect("weight");
        (0..n)
            .map(|s| {
                let mut names = Vec::new();
                let mut stack = table["stack"][s].as_u64();
                while let Some(i) = stack {
                    let frame = stacks["frame"][i as usize].as_u64().expect("frame") as usize;
                    let func = frames["func"][frame].as_u64().expect("func") as usize;
                    let name = funcs["name"][func].as_u64().expect("name") as usize;
                    names.push(strings[name].as_str().expect("string").to_string());
                    stack = stacks["prefix"][i as usize].as_u64();
                }
                names.reverse();
                (names, weights[s].as_i64().expect("weight"))
            })
            .collect()
    }

    #[test]
    fn one_thread_per_thread_with_weighted_stacks() {
        let mut profile = sample_profile(Options::default());
        profile.pid = Some(10);
        let v = json(&profile);
        assert!(v["meta"]["version"].as_u64().is_some(), "{}", v["meta"]);
        assert_eq!(v["meta"]["interval"], 10.0, "milliseconds");
        let threads = v["threads"].as_array().expect("threads");
        let names: Vec<&str> = threads.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.contains(&"thread worker (11)") && names.contains(&"thread MainThread (10)"),
            "{names:?}"
        );
        let worker = threads.iter().find(|t| t["name"] == "thread worker (11)").expect("worker");
        assert_eq!(worker["tid"], "11");
        assert_eq!(worker["pid"], "10");
        let main = threads.iter().find(|t| t["name"] == "thread MainThread (10)").expect("main");
        assert_eq!(
            samples(worker),
            [
                (
                    vec![
                        "<module> (app.py:30)".to_string(),
                        "run (app.py:20)".into(),
                        "hot (app.py:5)".into()
                    ],
                    3
                ),
                (
                    vec![
                        "<module> (app.py:30)".to_string(),
                        "run (app.py:21)".into(),
                        "cold (app.py:9)".into()
                    ],
                    1
                ),
            ]
        );
        assert_eq!(samples(main).iter().map(|(_, w)| w).sum::<i64>(), 2);
    }

    #[test]
    fn without_lines_frames_name_the_file_only() {
        let v = json(&sample_profile(Options { lines: false, split_threads: false }));
        let main =
            v["threads"].as_array().expect("threads").iter().find(|t| t["name"] == "thread MainThread (10)");
        let main = samples(main.expect("main"));
        assert_eq!(main, [(vec!["<module> (app.py)".to_string(), "wait (app.py)".into()], 2)]);
    }

    #[test]
    fn names_are_kept_exactly() {
        let mut p = Profile::new("t", None, Options::default());
        p.add(&thread(1, "a\"b"), [frame("<script>\"x\"\n", 1)].iter());
        let v = json(&p);
        let t = &v["threads"][0];
        assert_eq!(t["name"], "thread a\"b (1)");
        assert_eq!(samples(t), [(vec!["<script>\"x\"\n (app.py:1)".to_string()], 1)]);
    }

    #[test]
    fn counts_beyond_i32_are_split() {
        assert_eq!(weights(1).collect::<Vec<_>>(), [1]);
        assert_eq!(weights(i32::MAX as u64).collect::<Vec<_>>(), [i32::MAX]);
        let big = 2 * i32::MAX as u64 + 5;
        assert_eq!(weights(big).collect::<Vec<_>>(), [i32::MAX, i32::MAX, 5]);
        assert_eq!(weights(big).map(|w| w as u64).sum::<u64>(), big);
    }

    #[test]
    fn threads_without_a_kernel_id_stay_apart() {
        let mut p = Profile::new("t", None, Options::default());
        for ident in [1, 2] {
            let t = crate::ThreadId { tid: None, ident, name: Some("w".into()) };
            p.add(&t, [frame("f", 1)].iter());
        }
        let v = json(&p);
        let threads = v["threads"].as_array().expect("threads");
        let tids: Vec<&str> = threads.iter().filter_map(|t| t["tid"].as_str()).collect();
        assert_eq!(tids, ["0", "0.1"]);
        let names: Vec<&str> = threads.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["thread w (ident 0x1)", "thread w (ident 0x2)"]);
    }

    #[test]
    fn an_empty_profile_has_no_threads() {
        let v = json(&Profile::new("t", None, Options::default()));
        assert_eq!(v["threads"].as_array().map(Vec::len), Some(0));
        assert_eq!(v["meta"]["product"], "t");
    }
}
