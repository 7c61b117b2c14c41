//! The library's top-level modules depend on each other without a cycle,
//! and what only reads the data path's telemetry (`api`, `metrics`,
//! `simulate`) does not reach into the daemon.
//!
//! A cycle between top-level modules means neither can be understood,
//! tested or changed alone; the daemon is where threads and syscalls live,
//! and code that only reads what it publishes must not need it (the
//! simulator runs without a network, the API is tested in-process).
//!
//! The graph is read from the source: every `crate::<module>` path in a
//! file under `src/<module>/` or in `src/<module>.rs`, comments and string
//! literals excepted, test code included (a test's dependency is a
//! dependency all the same: it has to compile with the module).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges that close a known cycle, tolerated until the change under way
/// removes them. Each entry is (from, to). Empty: keep it so (an entry is
/// a debt, and this test fails once its edge is gone, to say so).
const ALLOWED: &[(&str, &str)] = &[];

/// Modules that read the data path's telemetry and must not import the
/// daemon.
const NOT_ON_DAEMON: &[&str] = &["api", "metrics", "simulate"];

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `text` with comments and the contents of string and char literals
/// blanked out (newlines kept), so only code is searched.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_lines = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            keep_lines(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, 0usize);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            keep_lines(&rest[..j], &mut out);
            i += j;
        } else if let Some(hashes) = raw_string_start(rest) {
            // r#"..."#: ends at a quote followed by as many hashes.
            let open = hashes + 2 + usize::from(rest[0] == b'b');
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let end = rest[open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(rest.len(), |p| open + p + close.len());
            keep_lines(&rest[..end], &mut out);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            keep_lines(&rest[..end], &mut out);
            i += end;
        } else if rest[0] == b'\'' && char_literal_len(rest).is_some() {
            let end = char_literal_len(rest).unwrap_or(1);
            keep_lines(&rest[..end], &mut out);
            i += end;
        } else {
            // Identifiers whole, so `br` or `r` inside one is no literal.
            let end = if rest[0].is_ascii_alphanumeric() || rest[0] == b'_' {
                rest.iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                    .unwrap_or(rest.len())
            } else {
                // One whole UTF-8 character.
                let mut n = 1;
                while n < rest.len() && (rest[n] & 0xc0) == 0x80 {
                    n += 1;
                }
                n
            };
            out.push_str(&text[i..i + end]);
            i += end;
        }
    }
    out
}

/// The number of `#` of a raw string literal starting here (`r"`, `r#"`,
/// `br#"`...), if one does.
fn raw_string_start(s: &[u8]) -> Option<usize> {
    let s = s.strip_prefix(b"b").unwrap_or(s);
    let s = s.strip_prefix(b"r")?;
    let hashes = s.iter().take_while(|&&c| c == b'#').count();
    (s.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal starting here (`'a'`, `'\n'`, `'\''`,
/// `'\u{1F600}'`), or `None` for a lifetime or label.
fn char_literal_len(s: &[u8]) -> Option<usize> {
    if s.get(1) == Some(&b'\\') {
        let close = s.iter().skip(3).position(|&c| c == b'\'')?;
        return Some(close + 4);
    }
    // One character (possibly multi-byte), then the closing quote.
    let mut n = 2;
    while n < s.len() && (s[n] & 0xc0) == 0x80 {
        n += 1;
    }
    (s.get(n) == Some(&b'\'')).then_some(n + 1)
}

/// The top-level module of a file under `src/` (`None` for the crate root
/// and the binary).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(m) => Some(m.to_owned()),
        None => Some(first.to_owned()),
    }
}

/// The modules a file's code names as `crate::<module>`, including inside
/// `use crate::{a::X, b}` groups.
fn referenced(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        // Not `qosd_crate::` or the like.
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group: those at brace depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        start = false;
                        found.insert(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn graph() -> (Graph, BTreeSet<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut g = Graph::new();
    for file in &files {
        let Some(from) = top_module(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for to in referenced(&code_only(&text)) {
            if to != from && modules.contains(&to) {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(file.strip_prefix(&src).unwrap().to_path_buf());
            }
        }
    }
    (g, modules)
}

/// A cycle through `g`, as the modules along it, if there is one.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first, colouring: a grey node met again closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for next in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, g, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut done, &mut Vec::new()))
}

fn describe(g: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|w| {
            let files: Vec<String> = g[&w[0]][&w[1]]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!("  {} -> {} (in {})", w[0], w[1], files.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_form_no_cycle() {
    let (g, _) = graph();
    for (from, to) in ALLOWED {
        assert!(
            g.get(*from).is_some_and(|e| e.contains_key(*to)),
            "{from} -> {to} is gone: remove it from ALLOWED in tests/module_graph.rs"
        );
    }
    let edges: BTreeMap<String, BTreeSet<String>> = g
        .iter()
        .map(|(from, tos)| {
            let kept = tos
                .keys()
                .filter(|to| !ALLOWED.contains(&(from.as_str(), to.as_str())))
                .cloned()
                .collect();
            (from.clone(), kept)
        })
        .collect();
    // Cycle after cycle (the edges among a reported cycle's modules set
    // aside before looking again), so one run shows most of what has to
    // change, not just the first.
    let mut cycles = Vec::new();
    let mut left = edges.clone();
    while let Some(cycle) = find_cycle(&left) {
        let members: BTreeSet<String> = cycle.iter().cloned().collect();
        cycles.push(describe(&g, &cycle));
        // Drop the group's inner edges and look for the next one.
        for (from, tos) in left.iter_mut() {
            if members.contains(from) {
                tos.retain(|to| !members.contains(to));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "the top-level modules form cycles:\n{}",
        cycles.join("\n  --\n")
    );
}

#[test]
fn telemetry_readers_do_not_import_the_daemon() {
    let (g, modules) = graph();
    assert!(modules.contains("daemon"), "no daemon module: {modules:?}");
    for m in NOT_ON_DAEMON {
        assert!(modules.contains(*m), "no {m} module: {modules:?}");
        if let Some(files) = g.get(*m).and_then(|e| e.get("daemon")) {
            panic!("{m} imports the daemon, in {files:?}");
        }
    }
}

/// The reader itself: comments and strings do not count, groups do.
#[test]
fn references_are_read_from_code_only() {
    let code = code_only(
        "use crate::{config::{A, B}, flow};\n\
         // crate::daemon in a comment\n\
         /* crate::api /* nested */ crate::io */\n\
         let s = \"crate::metrics\"; let r = r#\"crate::time\"#; let c = '\"';\n\
         fn f<'a>(x: &'a str) { crate::shaper::f(); }\n",
    );
    let found: Vec<String> = referenced(&code).into_iter().collect();
    assert_eq!(found, ["config", "flow", "shaper"]);
}
