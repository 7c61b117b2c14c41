//! The ISP line's capacity over time: per direction, piecewise constant,
//! from a built-in trace (`--link lte|vsat|dsl-evening`) or a CSV file
//! (`--link-trace FILE`).
//!
//! The file format, one segment per line:
//!
//! ```text
//! # seconds, upload, download[, phase]
//! 0,  20 Mbit, 50 Mbit, nominal
//! 20, 6 Mbit,  15 Mbit, drop
//! 50, 20 Mbit, 50 Mbit, recovered
//! 80
//! ```
//!
//! `seconds` is when the line's capacity becomes `upload`/`download` (from
//! the start of the run: the first line is 0, then strictly increasing).
//! Rates are written as in the configuration ("6 Mbit", "512 kbit") or as
//! plain bits per second ("6000000"). The optional fourth field names the
//! phase the report groups the segment in (consecutive segments of one
//! name are one phase; unnamed segments are each a phase of their own). A
//! last line with only `seconds` marks the end of the trace; without it
//! the last segment lasts as long as the one before it. `#` starts a
//! comment; a first line that starts with a letter is a header and is
//! skipped.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{Direction, Rate};

/// The lowest capacity a trace may give (as for `link.*`).
const MIN_BPS: u64 = 8_000;

/// The longest trace (as for `--duration`).
const MAX_LENGTH: Duration = Duration::from_secs(24 * 3600);

/// The length of a trace of one segment without an end line.
const SINGLE_SEGMENT: Duration = Duration::from_secs(60);

/// The base round trip of a trace file's line, unless `--rtt` says.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// The built-in traces' names, for `--link`.
pub const BUILTIN: [&str; 3] = ["lte", "vsat", "dsl-evening"];

/// One stretch of constant capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// When it starts, from the start of the run.
    pub start: Duration,
    /// Upload capacity.
    pub upload: Rate,
    /// Download capacity.
    pub download: Rate,
    /// The phase it belongs to.
    pub phase: String,
}

/// A named stretch of a trace that the report shows as one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Its name.
    pub name: String,
    /// Start, from the start of the run.
    pub start: Duration,
    /// End.
    pub end: Duration,
}

/// An ISP line whose capacity follows a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkTrace {
    /// What the trace is called (the built-in name or the file).
    pub name: String,
    /// Base round trip between the office and the servers (no queue).
    pub rtt: Duration,
    /// The segments, by start time, the first at zero.
    pub segments: Vec<Segment>,
    /// Its length (the simulation's default duration).
    pub length: Duration,
}

/// A trace file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    /// The file.
    pub file: String,
    /// The line (1-based), if the problem is on one.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "{}:{}: {}", self.file, n, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for TraceError {}

/// A segment of a built-in trace: start (s), upload and download (Mbit/s),
/// phase.
type Row = (f64, f64, f64, &'static str);

/// LTE in a busy cell: capacity swinging every few seconds between about
/// 30 and 5 Mbit/s down (10 and 2 up) as the cell's load and the signal
/// change; 50 ms base round trip.
const LTE: &[Row] = &[
    (0.0, 10.0, 30.0, "good signal"),
    (4.0, 9.0, 26.0, "good signal"),
    (8.0, 10.0, 29.0, "good signal"),
    (12.0, 8.0, 24.0, "good signal"),
    (16.0, 5.0, 14.0, "cell busy"),
    (19.0, 6.0, 18.0, "cell busy"),
    (22.0, 3.0, 9.0, "cell busy"),
    (25.0, 5.0, 15.0, "cell busy"),
    (28.0, 3.0, 8.0, "cell busy"),
    (31.0, 4.0, 12.0, "cell busy"),
    (34.0, 2.0, 6.0, "cell edge"),
    (37.0, 3.0, 8.0, "cell edge"),
    (40.0, 2.0, 5.0, "cell edge"),
    (43.0, 2.5, 7.0, "cell edge"),
    (46.0, 6.0, 18.0, "recovering"),
    (50.0, 8.0, 24.0, "recovering"),
    (54.0, 10.0, 30.0, "recovering"),
];

/// Geostationary VSAT, 3/20 Mbit/s: 600 ms base round trip, a rain fade
/// that takes the capacity down to 40 % for 44 s, then clears.
const VSAT: &[Row] = &[
    (0.0, 3.0, 20.0, "clear sky"),
    (30.0, 2.1, 14.0, "rain fade"),
    (33.0, 1.5, 10.0, "rain fade"),
    (36.0, 1.2, 8.0, "heavy rain"),
    (80.0, 1.8, 12.0, "clearing"),
    (83.0, 2.4, 16.0, "clearing"),
    (86.0, 3.0, 20.0, "clear again"),
];

/// VDSL shared in the evening, 10/50 Mbit/s: the download declines slowly
/// to 50 % (the upload to 60 %) at the peak hour, then comes back; 30 ms
/// base round trip. An evening compressed into a minute and a half.
const DSL_EVENING: &[Row] = &[
    (0.0, 10.0, 50.0, "afternoon"),
    (15.0, 9.5, 45.0, "evening"),
    (20.0, 9.0, 40.0, "evening"),
    (25.0, 8.0, 35.0, "evening"),
    (30.0, 7.0, 30.0, "evening"),
    (35.0, 6.0, 25.0, "peak hour"),
    (60.0, 7.0, 30.0, "late evening"),
    (65.0, 8.0, 35.0, "late evening"),
    (70.0, 9.0, 40.0, "late evening"),
    (75.0, 9.5, 45.0, "late evening"),
    (80.0, 10.0, 50.0, "night"),
];

fn mbit(m: f64) -> Rate {
    Rate::from_bps((m * 1e6).round() as u64)
}

impl LinkTrace {
    /// The built-in trace called `name` (see [`BUILTIN`]).
    pub fn builtin(name: &str) -> Option<LinkTrace> {
        let (rows, rtt, length) = match name {
            "lte" => (LTE, 50, 60),
            "vsat" => (VSAT, 600, 120),
            "dsl-evening" => (DSL_EVENING, 30, 90),
            _ => return None,
        };
        Some(LinkTrace {
            name: name.to_string(),
            rtt: Duration::from_millis(rtt),
            segments: rows
                .iter()
                .map(|&(s, up, down, phase)| Segment {
                    start: Duration::from_secs_f64(s),
                    upload: mbit(up),
                    download: mbit(down),
                    phase: phase.to_string(),
                })
                .collect(),
            length: Duration::from_secs(length),
        })
    }

    /// A trace of segments `(seconds, upload, download)`, each its own
    /// phase, ending at `length` (for tests and callers that build one).
    pub fn from_steps(
        name: &str,
        rtt: Duration,
        steps: &[(u64, Rate, Rate)],
        length: Duration,
    ) -> Self {
        LinkTrace {
            name: name.to_string(),
            rtt,
            segments: steps
                .iter()
                .enumerate()
                .map(|(i, &(s, upload, download))| Segment {
                    start: Duration::from_secs(s),
                    upload,
                    download,
                    phase: format!("{upload}/{download} #{}", i + 1),
                })
                .collect(),
            length,
        }
    }

    /// Reads the trace file at `path` (see the module's documentation).
    pub fn load(path: &Path) -> Result<LinkTrace, TraceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TraceError {
            file: file.clone(),
            line: None,
            message: format!("cannot read the trace: {e}"),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses the text of a trace file called `file` (for messages).
    pub fn parse(file: &str, text: &str) -> Result<LinkTrace, TraceError> {
        let err = |line: usize, message: String| TraceError {
            file: file.to_string(),
            line: Some(line),
            message,
        };
        let mut segments: Vec<Segment> = Vec::new();
        let mut end: Option<(usize, Duration)> = None;
        let mut first = true;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let head = fields.first().copied().unwrap_or_default();
            if first && head.starts_with(|c: char| c.is_ascii_alphabetic()) {
                first = false;
                continue; // a header
            }
            first = false;
            if let Some((at, _)) = end {
                return Err(err(
                    n,
                    format!(
                        "a segment after the end of the trace (line {at} has only a time, which ends it)"
                    ),
                ));
            }
            let start = parse_seconds(head).map_err(|m| err(n, m))?;
            if let Some(last) = segments.last()
                && start <= last.start
            {
                return Err(err(
                    n,
                    format!(
                        "time {} s is not after the previous line's {} s (times must increase)",
                        start.as_secs_f64(),
                        last.start.as_secs_f64()
                    ),
                ));
            }
            if segments.is_empty() && !start.is_zero() {
                return Err(err(
                    n,
                    format!(
                        "the first segment starts at {} s; it must start at 0",
                        start.as_secs_f64()
                    ),
                ));
            }
            match fields.as_slice() {
                [_] => end = Some((n, start)),
                [_, up, down] | [_, up, down, _] => {
                    let upload = parse_capacity(up).map_err(|m| err(n, format!("upload: {m}")))?;
                    let download =
                        parse_capacity(down).map_err(|m| err(n, format!("download: {m}")))?;
                    let phase = match fields.get(3) {
                        Some(p) if !p.is_empty() => (*p).to_string(),
                        _ => format!("{upload}/{download} #{}", segments.len() + 1),
                    };
                    segments.push(Segment {
                        start,
                        upload,
                        download,
                        phase,
                    });
                }
                _ => {
                    return Err(err(
                        n,
                        format!(
                            "{} fields; write seconds,upload,download[,phase] (e.g. 20,6 Mbit,15 Mbit) or only seconds to end the trace",
                            fields.len()
                        ),
                    ));
                }
            }
        }
        let Some(last) = segments.last() else {
            return Err(TraceError {
                file: file.to_string(),
                line: None,
                message:
                    "no segment (write lines of seconds,upload,download, e.g. 0,20 Mbit,50 Mbit)"
                        .into(),
            });
        };
        let length = match (end, segments.len()) {
            (Some((_, t)), _) => t,
            (None, 1) => SINGLE_SEGMENT,
            (None, k) => {
                let before = segments.get(k - 2).map(|s| s.start).unwrap_or_default();
                last.start + (last.start - before)
            }
        };
        if length > MAX_LENGTH {
            return Err(TraceError {
                file: file.to_string(),
                line: None,
                message: format!("the trace lasts {} s; at most 24 h", length.as_secs()),
            });
        }
        Ok(LinkTrace {
            name: file.to_string(),
            rtt: DEFAULT_RTT,
            segments,
            length,
        })
    }

    /// The segment in force at `at` (the last one past the end).
    pub fn segment_at(&self, at: Duration) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.start <= at);
        self.segments.get(i.saturating_sub(1))
    }

    /// The capacity in `dir` at `at`.
    pub fn rate(&self, dir: Direction, at: Duration) -> Rate {
        self.segment_at(at)
            .map(|s| s.rate(dir))
            .unwrap_or(Rate::from_bps(MIN_BPS))
    }

    /// The highest capacity in `dir` (the line's nominal rate).
    pub fn peak(&self, dir: Direction) -> Rate {
        self.segments
            .iter()
            .map(|s| s.rate(dir))
            .max()
            .unwrap_or(Rate::from_bps(MIN_BPS))
    }

    /// The lowest capacity in `dir`.
    pub fn lowest(&self, dir: Direction) -> Rate {
        self.segments
            .iter()
            .map(|s| s.rate(dir))
            .min()
            .unwrap_or(Rate::from_bps(MIN_BPS))
    }

    /// The phases of a run of `duration`: consecutive segments of one
    /// phase name together, cut at `duration` (the last one stretched to
    /// it when the run is longer than the trace).
    pub fn phases(&self, duration: Duration) -> Vec<Phase> {
        let mut out: Vec<Phase> = Vec::new();
        for s in &self.segments {
            if s.start >= duration {
                break;
            }
            match out.last_mut() {
                Some(p) if p.name == s.phase => {}
                _ => {
                    if let Some(p) = out.last_mut() {
                        p.end = s.start;
                    }
                    out.push(Phase {
                        name: s.phase.clone(),
                        start: s.start,
                        end: duration,
                    });
                }
            }
        }
        out
    }

    /// The mean capacity in `dir` between `from` and `to`, bits per second.
    pub fn mean_rate(&self, dir: Direction, from: Duration, to: Duration) -> f64 {
        if to <= from {
            return self.rate(dir, from).bps() as f64;
        }
        let mut bits = 0.0;
        for (i, s) in self.segments.iter().enumerate() {
            let next = self
                .segments
                .get(i + 1)
                .map(|n| n.start)
                .unwrap_or(Duration::MAX);
            let (a, b) = (s.start.max(from), next.min(to));
            if b > a {
                bits += s.rate(dir).bps() as f64 * (b - a).as_secs_f64();
            }
        }
        bits / (to - from).as_secs_f64()
    }
}

impl Segment {
    /// The capacity in `dir`.
    pub fn rate(&self, dir: Direction) -> Rate {
        match dir {
            Direction::Upload => self.upload,
            Direction::Download => self.download,
        }
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("time \"{s}\" is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("time \"{s}\" must be 0 or more seconds"));
    }
    if v > MAX_LENGTH.as_secs_f64() {
        return Err(format!("time \"{s}\" is beyond 24 h"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// "6 Mbit" (the configuration's syntax) or "6000000" (bits per second).
fn parse_capacity(s: &str) -> Result<Rate, String> {
    if s.is_empty() {
        return Err("missing rate".into());
    }
    let r = if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>()
            .map(Rate::from_bps)
            .map_err(|_| format!("rate \"{s}\" is too large"))?
    } else {
        Rate::from_str(s)?
    };
    if r.bps() < MIN_BPS {
        return Err(format!("rate \"{s}\" is below the minimum of 8 kbit"));
    }
    if r.bps() > crate::config::units::MAX_RATE_BPS {
        return Err(format!("rate \"{s}\" is above the maximum of 1 Tbit"));
    }
    Ok(r)
}
