//! The `qosd` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use qosd::classify::dpi::dns::DnsCache;

/// Traffic prioritisation for branch-office Internet gateways.
#[derive(Parser)]
#[command(name = "qosd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file (the embedded default when no FILE is
    /// given). Exits 0 when valid, 2 when not, with every error on stderr.
    CheckConfig {
        /// The configuration file to check.
        file: Option<PathBuf>,
        /// Print the effective configuration, every default filled in.
        #[arg(long)]
        print: bool,
    },
    /// Simulate an office under load in virtual time, with qosd and
    /// without (a plain FIFO with a modem-sized buffer), and compare. With
    /// --link or --link-trace, on an ISP line whose capacity varies: qosd
    /// at a fixed rate, qosd with autorate, and the line alone.
    Simulate {
        /// Configuration (the embedded default when absent).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Simulated time [default: 60s, or the capacity trace's length].
        #[arg(long, value_parser = parse_duration_arg)]
        duration: Option<std::time::Duration>,
        /// Replay a capture at its timestamps instead of the built-in office.
        #[arg(long, conflicts_with_all = ["link", "link_trace"])]
        pcap: Option<PathBuf>,
        /// An ISP line with a built-in capacity trace: lte (5-30 Mbit down,
        /// swinging every few seconds), vsat (geostationary, 600 ms round
        /// trip, a rain fade to 40 %) or dsl-evening (declining to 50 % and
        /// back).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(qosd::simulate::trace::BUILTIN))]
        link: Option<String>,
        /// An ISP line whose capacity follows a CSV file: lines of
        /// `seconds,upload,download[,phase]` (rates as "6 Mbit" or bits/s),
        /// each from that time on; a last line of only seconds ends it.
        #[arg(long, conflicts_with = "link")]
        link_trace: Option<PathBuf>,
        /// Base round trip between the office and the servers [default:
        /// 30ms, or the built-in trace's own].
        #[arg(long, value_parser = parse_duration_arg)]
        rtt: Option<std::time::Duration>,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// The Prometheus exposition qosd would serve at the end instead
        /// of the table (e.g. for `promtool check metrics`).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// One-shot summary of a running qosd, from its admin API.
    Status {
        /// Configuration naming api.listen (default /etc/qosd/qosd.toml if
        /// it exists, else the embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The API address, overriding the configuration's.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
    },
    /// Live view of a running qosd, refreshed every second (Ctrl-C quits).
    Top {
        /// Configuration naming api.listen (as for `status`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The API address, overriding the configuration's.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// How many flows to show.
        #[arg(long, default_value_t = 15)]
        flows: usize,
    },
    /// Run the daemon: bridge interfaces.lan and interfaces.wan, classify
    /// and shape both directions, until SIGTERM or SIGINT.
    Run {
        /// Configuration (the embedded default when absent).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Classify every flow of a capture (pcap or pcapng) and report each
    /// flow's app, category and how it was decided.
    Classify {
        /// The capture to read.
        #[arg(long)]
        pcap: PathBuf,
        /// Configuration (the embedded default when absent).
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON object per flow per line.
        #[arg(long)]
        json: bool,
        /// The traffic no app named, by host name (registrable domain) or
        /// protocol and server port: the N largest keys in the summary
        /// [default: 10]; with --json, one object `{"unknown": [...],
        /// "total_bytes": n}` (as GET /api/v1/unknown) instead of the flows.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
        unknown: Option<usize>,
    },
    /// List the app catalog: the built-in apps plus those of
    /// classify.apps_file, each with its category, host patterns and
    /// signatures. Rules name these apps in `apps = [...]`.
    Apps {
        /// Show this app in full (every host pattern and signature).
        app: Option<String>,
        /// Configuration whose classify.apps_file adds apps (the embedded
        /// default when absent).
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON: an array of every app, or the one app named.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status for an invalid configuration or unusable arguments.
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file, print } => check_config(file, print),
        Command::Classify {
            pcap,
            config,
            json,
            unknown,
        } => classify(&pcap, config, json, unknown),
        Command::Apps { app, config, json } => apps(app.as_deref(), config, json),
        Command::Simulate {
            config,
            duration,
            pcap,
            link,
            link_trace,
            rtt,
            json,
            prometheus,
        } => simulate(
            config,
            SimArgs {
                duration,
                pcap,
                link,
                link_trace,
                rtt,
                json,
                prometheus,
            },
        ),
        Command::Status { config, api } => status(config, api),
        Command::Top { config, api, flows } => top(config, api, flows),
        Command::Run { config } => run(config),
    }
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 60s or 5m)"))?;
    if d.is_zero() || d > std::time::Duration::from_secs(24 * 3600) {
        return Err("between 1ms and 24h".into());
    }
    Ok(d)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(config: Option<PathBuf>) -> ExitCode {
    init_logging();
    match qosd::daemon::run(config.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The API address: `--api`, else `api.listen` of `--config`, else of
/// /etc/qosd/qosd.toml when it exists, else the default.
fn api_address(
    config: Option<PathBuf>,
    api: Option<std::net::SocketAddr>,
) -> Result<std::net::SocketAddr, ExitCode> {
    if let Some(a) = api {
        return Ok(a);
    }
    let installed = PathBuf::from("/etc/qosd/qosd.toml");
    let path = config.or_else(|| installed.exists().then_some(installed));
    load_config(path).map(|c| c.api.listen)
}

fn status(config: Option<PathBuf>, api: Option<std::net::SocketAddr>) -> ExitCode {
    let addr = match api_address(config, api) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = qosd::client::Client::new(addr);
    match (
        client.get("/api/v1/status"),
        client.get("/api/v1/categories"),
    ) {
        (Ok(st), Ok(cats)) => {
            print!("{}", qosd::client::render_status(&st, &cats));
            ExitCode::SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("qosd status: {e}");
            ExitCode::from(1)
        }
    }
}

fn top(config: Option<PathBuf>, api: Option<std::net::SocketAddr>, flows: usize) -> ExitCode {
    let addr = match api_address(config, api) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = qosd::client::Client::new(addr);
    loop {
        let frame = match (
            client.get("/api/v1/status"),
            client.get("/api/v1/categories"),
            client.get(&format!("/api/v1/flows?top={flows}")),
        ) {
            (Ok(st), Ok(cats), Ok(fl)) => {
                // The hosts panel needs a qosd with /api/v1/hosts.
                let hosts = client
                    .get("/api/v1/hosts?top=5")
                    .map(|h| format!("\n{}", qosd::client::render_hosts(&h)))
                    .unwrap_or_default();
                // And the unknown traffic panel one with /api/v1/unknown.
                let unknown = client
                    .get("/api/v1/unknown?top=5")
                    .map(|u| format!("\n{}", qosd::client::render_unknown(&u)))
                    .unwrap_or_default();
                format!(
                    "{}\n{}{hosts}{unknown}",
                    qosd::client::render_status(&st, &cats),
                    qosd::client::render_flows(&fl)
                )
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => format!("{e}\n"),
        };
        // Home the cursor and clear the screen, then draw.
        print!("\x1b[H\x1b[2J{frame}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `qosd simulate`'s options besides the configuration.
struct SimArgs {
    duration: Option<std::time::Duration>,
    pcap: Option<PathBuf>,
    link: Option<String>,
    link_trace: Option<PathBuf>,
    rtt: Option<std::time::Duration>,
    json: bool,
    prometheus: bool,
}

fn simulate(config: Option<PathBuf>, args: SimArgs) -> ExitCode {
    use qosd::simulate::LinkTrace;
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let trace = match (&args.link, &args.link_trace) {
        (Some(name), _) => LinkTrace::builtin(name),
        (None, Some(path)) => match LinkTrace::load(path) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("qosd simulate: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        },
        (None, None) => None,
    };
    let trace = trace.map(|mut t| {
        if let Some(rtt) = args.rtt {
            t.rtt = rtt;
        }
        t
    });
    let default = std::time::Duration::from_secs(60);
    let duration = args
        .duration
        .or(trace.as_ref().map(|t| t.length))
        .unwrap_or(default);
    let rtt = args.rtt.unwrap_or(qosd::simulate::trace::DEFAULT_RTT);
    if args.prometheus {
        let view = match (args.pcap, &trace) {
            (Some(path), _) => match qosd::simulate::metrics_view_pcap(&cfg, &path) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("qosd simulate: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            },
            (None, Some(t)) => qosd::simulate::metrics_view_link(&cfg, t, duration),
            (None, None) => qosd::simulate::metrics_view_office(&cfg, duration),
        };
        print!("{}", qosd::metrics::encode_view(&view));
        return ExitCode::SUCCESS;
    }
    let report = match (args.pcap, &trace) {
        (Some(path), _) => match qosd::simulate::run_pcap(&cfg, &path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("qosd simulate: {e}");
                return ExitCode::from(EXIT_INVALID);
            }
        },
        (None, Some(t)) => qosd::simulate::run_link(&cfg, t, duration),
        (None, None) => qosd::simulate::run_office_rtt(&cfg, duration, rtt),
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("qosd simulate: {e}"),
        }
    } else {
        print!("{}", report.to_table());
    }
    ExitCode::SUCCESS
}

fn load_config(file: Option<PathBuf>) -> Result<qosd::config::Config, ExitCode> {
    qosd::config::load(file.as_deref()).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_INVALID)
    })
}

fn classify(
    pcap: &std::path::Path,
    config: Option<PathBuf>,
    json: bool,
    unknown: Option<usize>,
) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let tty = std::io::stderr().is_terminal();
    let progress = |n: u64| {
        if tty {
            eprint!("\r{n} frames...");
        }
    };
    let (flows, stats) = match qosd::offline::classify_capture(
        pcap,
        &cfg,
        Arc::new(DnsCache::new(65_536)),
        progress,
    ) {
        Ok(r) => r,
        Err(e) => {
            if tty {
                eprintln!();
            }
            eprintln!("qosd classify: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if tty && stats.read.frames >= 65_536 {
        eprintln!();
    }
    let mut out = std::io::stdout().lock();
    if let (true, Some(n)) = (json, unknown) {
        // One object, not a line per flow: the flow lines stay what
        // scripts read, and this is asked for by name.
        let report = qosd::offline::unknown_traffic(&flows, n);
        return match serde_json::to_string(&report) {
            Ok(text) => {
                let _ = writeln!(out, "{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("qosd classify: {e}");
                ExitCode::from(1)
            }
        };
    }
    if json {
        for f in &flows {
            match serde_json::to_string(f) {
                Ok(line) => {
                    if writeln!(out, "{line}").is_err() {
                        return ExitCode::SUCCESS; // stdout closed (e.g. piped to head)
                    }
                }
                Err(e) => eprintln!("qosd classify: {e}"),
            }
        }
        return ExitCode::SUCCESS;
    }
    print_flow_table(&mut out, &flows, &cfg, &stats);
    print_unknown(&mut out, &flows, unknown.unwrap_or(10));
    ExitCode::SUCCESS
}

/// The summary's "Unknown traffic" section: the largest keys of what no
/// app named, for the admin to extend the catalog from.
fn print_unknown(out: &mut impl Write, flows: &[qosd::offline::FlowReport], n: usize) {
    let report = qosd::offline::unknown_traffic(flows, n);
    let all: u64 = flows.iter().map(|f| f.bytes).sum::<u64>().max(1);
    let _ = writeln!(
        out,
        "\nUnknown traffic (top {n}): {} bytes, {:.1}% of the capture",
        report.total_bytes,
        report.total_bytes as f64 * 100.0 / all as f64
    );
    if report.unknown.is_empty() {
        let _ = writeln!(out, "(none: an app named every flow)");
        return;
    }
    let _ = writeln!(
        out,
        "{:<32} {:<5} {:>6} {:>12} {:>12} {:>12}  example",
        "key", "kind", "flows", "bytes", "up", "down"
    );
    for e in &report.unknown {
        let kind = match e.kind {
            qosd::telemetry::unknown::KeyKind::Host => "host",
            qosd::telemetry::unknown::KeyKind::Port => "port",
        };
        let _ = writeln!(
            out,
            "{:<32} {:<5} {:>6} {:>12} {:>12} {:>12}  {}",
            e.key, kind, e.flows, e.bytes, e.upload_bytes, e.download_bytes, e.example
        );
    }
}

fn print_flow_table(
    out: &mut impl Write,
    flows: &[qosd::offline::FlowReport],
    cfg: &qosd::config::Config,
    stats: &qosd::offline::CaptureStats,
) {
    let _ = writeln!(
        out,
        "{:<6} {:<45} {:<45} {:<20} {:<10} {:<18} {:>8} {:>12}",
        "proto", "src", "dst", "app", "category", "decided_by", "packets", "bytes"
    );
    for f in flows {
        let _ = writeln!(
            out,
            "{:<6} {:<45} {:<45} {:<20} {:<10} {:<18} {:>8} {:>12}",
            f.proto,
            f.src,
            f.dst,
            f.app.as_deref().unwrap_or("-"),
            f.category,
            f.decided_by,
            f.packets,
            f.bytes
        );
    }
    let total_bytes: u64 = flows.iter().map(|f| f.bytes).sum::<u64>().max(1);
    let _ = writeln!(
        out,
        "\n{:<10} {:>8} {:>10} {:>14} {:>7}",
        "category", "flows", "packets", "bytes", "share"
    );
    for c in &cfg.category {
        let (n, p, b) = flows
            .iter()
            .filter(|f| f.category == c.name)
            .fold((0u64, 0u64, 0u64), |(n, p, b), f| {
                (n + 1, p + f.packets, b + f.bytes)
            });
        let _ = writeln!(
            out,
            "{:<10} {:>8} {:>10} {:>14} {:>6.1}%",
            c.name,
            n,
            p,
            b,
            b as f64 * 100.0 / total_bytes as f64
        );
    }
    let _ = writeln!(
        out,
        "\n{} frames: {} IP, {} not IP, {} malformed, {} skipped (unsupported link type)",
        stats.read.frames + stats.read.skipped,
        stats.ip_frames,
        stats.non_ip_frames,
        stats.malformed_frames,
        stats.read.skipped
    );
    if stats.dpi_refused_frames > 0 {
        let _ = writeln!(
            out,
            "{} frames found classify.dpi_memory spent (their flows' partial handshakes were not kept; a larger budget may name more flows)",
            stats.dpi_refused_frames
        );
    }
}

fn apps(name: Option<&str>, config: Option<PathBuf>, json: bool) -> ExitCode {
    use qosd::config::catalog_report::{app_reports, render_app, render_table};
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let apps = app_reports(&cfg);
    let text = match name {
        None if json => serde_json::to_string_pretty(&apps).map(|s| s + "\n"),
        None => Ok(render_table(&apps)),
        Some(name) => match apps.iter().find(|a| a.name == name) {
            Some(app) if json => serde_json::to_string_pretty(app).map(|s| s + "\n"),
            Some(app) => Ok(render_app(app)),
            None => {
                let like: Vec<&str> = apps
                    .iter()
                    .map(|a| a.name)
                    .filter(|n| n.contains(name) || name.contains(n))
                    .collect();
                eprint!("qosd apps: no app named \"{name}\"");
                if like.is_empty() {
                    eprintln!(" (`qosd apps` lists them all)");
                } else {
                    eprintln!("; did you mean {}?", like.join(", "));
                }
                return ExitCode::from(EXIT_INVALID);
            }
        },
    };
    match text {
        Ok(t) => {
            // A closed stdout (piped to head) is not an error.
            let _ = std::io::stdout().lock().write_all(t.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qosd apps: {e}");
            ExitCode::from(1)
        }
    }
}

fn check_config(file: Option<PathBuf>, print: bool) -> ExitCode {
    match qosd::config::load(file.as_deref()) {
        Ok(cfg) => {
            if print {
                print!("{}", cfg.to_toml());
            } else {
                println!(
                    "{}: valid ({} categories, {} rules)",
                    cfg.source,
                    cfg.category.len(),
                    cfg.rule.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let n = errors.0.len();
            eprintln!("{errors}");
            eprintln!(
                "{n} error{} found; configuration not valid",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_INVALID)
        }
    }
}
