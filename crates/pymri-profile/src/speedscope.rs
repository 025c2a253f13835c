//! speedscope's file format (`https://www.speedscope.app/file-format-schema.json`): frames
//! shared by every profile, and one sampled profile per thread.

use crate::{frame_name, Profile, Writer};
use serde::Serialize;
use std::io::{self, Write};

/// A speedscope JSON file.
pub struct Speedscope;

const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
struct File<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    name: &'a str,
    exporter: String,
    #[serde(rename = "activeProfileIndex")]
    active_profile_index: usize,
    shared: Shared<'a>,
    profiles: Vec<Sampled>,
}

#[derive(Serialize)]
struct Shared<'a> {
    frames: Vec<FrameEntry<'a>>,
}

#[derive(Serialize)]
struct FrameEntry<'a> {
    name: String,
    file: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<i32>,
}

#[derive(Serialize)]
struct Sampled {
    #[serde(rename = "type")]
    kind: &'static str,
    name: String,
    unit: &'static str,
    #[serde(rename = "startValue")]
    start_value: f64,
    #[serde(rename = "endValue")]
    end_value: f64,
    samples: Vec<Vec<u32>>,
    weights: Vec<f64>,
}

impl Writer for Speedscope {
    fn extension(&self) -> &'static str {
        "speedscope.json"
    }

    fn write(&self, profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
        // With a schedule, a sample weighs its interval in seconds; without, it counts 1.
        let (unit, weight) = match profile.interval {
            Some(i) => ("seconds", i.as_secs_f64()),
            None => ("none", 1.0),
        };
        let frames = profile
            .frames()
            .iter()
            .map(|f| FrameEntry {
                // The function alone is what speedscope shows; keep the file and line visible
                // in the name as the other formats do.
                name: frame_name(f),
                file: &f.file,
                line: f.line,
            })
            .collect();
        let profiles = profile
            .threads()
            .iter()
            .map(|t| {
                let (samples, weights): (Vec<Vec<u32>>, Vec<f64>) =
                    t.stacks().map(|(stack, n)| (stack.to_vec(), n as f64 * weight)).unzip();
                Sampled {
                    kind: "sampled",
                    name: t.thread.label(),
                    unit,
                    start_value: 0.0,
                    end_value: weights.iter().sum(),
                    samples,
                    weights,
                }
            })
            .collect();
        let file = File {
            schema: SCHEMA,
            name: &profile.name,
            exporter: format!("pymri {}", env!("CARGO_PKG_VERSION")),
            active_profile_index: 0,
            shared: Shared { frames },
            profiles,
        };
        serde_json::to_writer(&mut *out, &file).map_err(io::Error::other)?;
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::sample_profile;
    use crate::Options;
    use serde_json::Value;

    #[test]
    fn one_sampled_profile_per_thread_over_shared_frames() {
        let mut out = Vec::new();
        Speedscope.write(&sample_profile(Options::default()), &mut out).expect("write");
        let v: Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["$schema"], SCHEMA);
        let frames = v["shared"]["frames"].as_array().expect("frames");
        let profiles = v["profiles"].as_array().expect("profiles");
        assert_eq!(profiles.len(), 2);
        let worker = &profiles[0];
        assert_eq!(worker["type"], "sampled");
        assert_eq!(worker["name"], "thread worker (11)");
        assert_eq!(worker["unit"], "seconds");
        let weights: Vec<f64> =
            worker["weights"].as_array().expect("weights").iter().filter_map(Value::as_f64).collect();
        assert_eq!(weights.len(), 2);
        assert!((weights[0] - 0.03).abs() < 1e-9 && (weights[1] - 0.01).abs() < 1e-9, "{weights:?}");
        assert!((worker["endValue"].as_f64().expect("end") - 0.04).abs() < 1e-9);
        let hot: Vec<&str> = worker["samples"][0]
            .as_array()
            .expect("stack")
            .iter()
            .map(|i| frames[i.as_u64().expect("index") as usize]["name"].as_str().expect("name"))
            .collect();
        assert_eq!(hot, ["<module> (app.py:30)", "run (app.py:20)", "hot (app.py:5)"], "root first");
        assert_eq!(frames[0]["file"], "app.py");
        assert_eq!(frames[0]["line"], 30);
    }
}
