#!/usr/bin/env python3
"""Generate config/apps-community.toml from v2fly/domain-list-community.

    python3 deploy/catalog/generate-community.py [options] DLC_DIR

DLC_DIR is a local checkout of https://github.com/v2fly/domain-list-community
(its data/ directory and LICENSE are read). deploy/catalog/community-map.toml
says which lists become which qosd apps.

Options:
  --check              compare with the committed file instead of writing it
                       (exit 1 and a diff when they differ)
  --commit HASH        the checkout's commit, for the header (default:
                       `git -C DLC_DIR rev-parse HEAD`)
  --file-commits FILE  "<list> <commit>" lines, for a DLC_DIR assembled from
                       single files of different commits (LICENSE included);
                       the header then names each list's commit
  --map PATH           the mapping (default: deploy/catalog/community-map.toml)
  --out PATH           the output (default: config/apps-community.toml)

Rules (see the map's header too):
  * "domain:X" and bare "X" become "X" and "*.X"; "full:X" becomes "X";
  * "keyword:" and "regexp:" lines are skipped (qosd has no such matchers);
  * "include:L" is followed (recursively, each list once per app), except
    lists named "*-ads"; "include:L @a" keeps only L's lines tagged @a, and
    "@!a" only those not tagged @a;
  * lines tagged @ads are dropped; other tags are ignored;
  * single-label names (whole TLDs such as "nico") are dropped;
  * names already covered by a wildcard of the same app are dropped;
  * a host pattern already produced for an earlier app of the map is dropped
    from later ones (with a note on stderr).

Python 3.11+ standard library only.
"""

import argparse
import difflib
import os
import re
import subprocess
import sys
import tomllib

REPO_URL = "https://github.com/v2fly/domain-list-community"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MAP = os.path.join(ROOT, "deploy", "catalog", "community-map.toml")
DEFAULT_OUT = os.path.join(ROOT, "config", "apps-community.toml")
COMMAND = "python3 deploy/catalog/generate-community.py /path/to/domain-list-community"
LABEL = re.compile(r"^[a-z0-9_-]{1,63}$")
CATEGORIES = {"control", "voice", "video", "business", "browsing", "streaming", "bulk"}


class Fail(Exception):
    pass


def parse_line(raw):
    """(kind, value, attrs) of one list line, or None for a blank/comment."""
    line = raw.split("#", 1)[0].strip()
    if not line:
        return None
    parts = line.split()
    entry, attrs = parts[0], {p[1:] for p in parts[1:] if p.startswith("@")}
    kind, sep, value = entry.partition(":")
    if not sep:
        kind, value = "domain", entry
    return kind, value.lower(), attrs


def read_list(data_dir, name):
    path = os.path.join(data_dir, name)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except OSError as e:
        raise Fail(f"cannot read list {name!r}: {e}")


def attr_ok(attrs, want):
    """want: a set of "a" (must be tagged) and "!a" (must not be)."""
    for w in want:
        if w.startswith("!"):
            if w[1:] in attrs:
                return False
        elif w not in attrs:
            return False
    return True


def expand(data_dir, name, lines, want, seen, stats):
    """(kind, name) pairs of a list's lines, includes followed."""
    out = []
    for raw in lines:
        parsed = parse_line(raw)
        if parsed is None:
            continue
        kind, value, attrs = parsed
        if kind == "include":
            if value.endswith("-ads"):
                stats["ads_includes"].add(value)
                continue
            if value in seen:
                continue
            seen.add(value)
            sub = read_list(data_dir, value)
            out += expand(data_dir, value, sub, want | attrs, seen, stats)
            continue
        if "ads" in attrs:
            stats["ads"] += 1
            continue
        if not attr_ok(attrs, want):
            continue
        if kind in ("keyword", "regexp"):
            stats["skipped_" + kind] += 1
            continue
        if kind not in ("domain", "full"):
            raise Fail(f"list {name!r}: unknown line type {kind!r}")
        labels = value.rstrip(".").split(".")
        if not all(LABEL.match(label) for label in labels):
            stats["invalid"].append(f"{name}: {value}")
            continue
        if len(labels) < 2:
            stats["tld"].append(f"{name}: {value}")
            continue
        out.append((kind, ".".join(labels)))
    return out


def selected_lines(data_dir, entry):
    """The list's lines after the map's only/exclude."""
    lines = read_list(data_dir, entry["list"])
    only, exclude = entry.get("only"), entry.get("exclude", [])
    written = {}
    for raw in lines:
        parsed = parse_line(raw)
        if parsed is not None:
            written.setdefault(raw.split("#", 1)[0].split()[0].lower(), []).append(raw)
    for key in list(only or []) + list(exclude):
        if key.lower() not in written:
            raise Fail(f"map: list {entry['list']!r} has no line {key!r} (only/exclude)")
    if only is not None:
        keep = {k.lower() for k in only}
        return [raw for k, raws in written.items() if k in keep for raw in raws]
    drop = {k.lower() for k in exclude}
    return [raw for k, raws in written.items() if k not in drop for raw in raws]


def patterns(pairs):
    """Host patterns for one app, sorted, without ones a wildcard covers."""
    domains = {v for k, v in pairs if k == "domain"}

    def covered(name, strict):
        parts = name.split(".")
        start = 1 if strict else 0
        return any(".".join(parts[i:]) in domains for i in range(start, len(parts) - 1))

    hosts = set()
    for kind, value in pairs:
        if kind == "domain":
            if not covered(value, strict=True):
                hosts.add(value)
                hosts.add("*." + value)
        elif not covered(value, strict=False):
            hosts.add(value)
    return sorted(hosts, key=lambda h: (h.removeprefix("*."), h.startswith("*.")))


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def generate(data_dir, mapping, commit, file_commits):
    stats = {"ads": 0, "skipped_keyword": 0, "skipped_regexp": 0, "ads_includes": set(),
             "invalid": [], "tld": []}
    apps = {}  # name -> dict, in map order
    for entry in mapping.get("list", []):
        for key in ("list", "app", "category", "description"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise Fail(f"map: a [[list]] lacks {key!r}: {entry}")
        if entry["category"] not in CATEGORIES:
            raise Fail(f"map: list {entry['list']!r}: unknown category {entry['category']!r}")
        app = apps.setdefault(entry["app"], {"category": entry["category"],
                                             "description": entry["description"],
                                             "lists": [], "pairs": []})
        if (app["category"], app["description"]) != (entry["category"], entry["description"]):
            raise Fail(f"map: app {entry['app']!r} has two categories or descriptions")
        app["lists"].append(entry["list"])
        lines = selected_lines(data_dir, entry)
        app["pairs"] += expand(data_dir, entry["list"], lines, set(), {entry["list"]}, stats)

    claimed = {}
    body = []
    total = 0
    for name, app in apps.items():
        hosts = []
        for h in patterns(app["pairs"]):
            if h in claimed:
                print(f"note: {h} is already in {claimed[h]}; not added to {name}", file=sys.stderr)
                continue
            claimed[h] = name
            hosts.append(h)
        if not hosts:
            continue
        total += len(hosts)
        sources = ", ".join(
            f"data/{l}" + (f" @ {file_commits[l][:12]}" if l in file_commits else "")
            for l in app["lists"])
        body.append(f"\n# from {sources}\n[[app]]\nname = {toml_str(name)}\n"
                    f"category = {toml_str(app['category'])}\n"
                    f"description = {toml_str(app['description'])}\n"
                    "hosts = [\n" + "".join(f"  {toml_str(h)},\n" for h in hosts) + "]\n")

    with open(os.path.join(data_dir, os.pardir, "LICENSE"), encoding="utf-8") as f:
        copyright_line = next((l.strip() for l in f if l.startswith("Copyright")), None)
    if copyright_line is None:
        raise Fail("LICENSE has no Copyright line")
    if file_commits:
        where = ("single files read at the commits named per app below (LICENSE at "
                 f"{file_commits.get('LICENSE', 'unknown')})")
    else:
        where = f"commit {commit}"
    header = (
        "# GENERATED FILE: do not edit; edit deploy/catalog/community-map.toml and regenerate:\n"
        f"#   {COMMAND}\n"
        "# (`--check` compares instead of writing; `--help` for the options).\n"
        "#\n"
        f"# Host names from v2fly/domain-list-community, {REPO_URL},\n"
        f"# {where}.\n"
        "# Licence of the data: MIT License,\n"
        f"#   {copyright_line}\n"
        "#   Permission is hereby granted, free of charge, to any person obtaining a copy of\n"
        "#   this software and associated documentation files (the \"Software\"), to deal in\n"
        "#   the Software without restriction, including without limitation the rights to\n"
        "#   use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies\n"
        "#   of the Software, and to permit persons to whom the Software is furnished to do\n"
        "#   so, subject to the following conditions: The above copyright notice and this\n"
        "#   permission notice shall be included in all copies or substantial portions of\n"
        "#   the Software. THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND,\n"
        "#   EXPRESS OR IMPLIED (full text: the repository's LICENSE file).\n"
        "#\n"
        "# qosd loads this catalog after config/apps.toml: an app named there gets these\n"
        "# hosts added (its category and signatures stay), and a host another\n"
        "# hand-written app lists stays with that app (config/APPS.md, \"Community\n"
        "# host lists\").\n"
        f"# {len(body)} apps, {total} host patterns; {stats['skipped_keyword']} keyword and "
        f"{stats['skipped_regexp']} regexp lines,\n"
        f"# {stats['ads']} @ads lines, {len(stats['tld'])} whole-TLD lines and "
        f"{len(stats['invalid'])} invalid names left out.\n"
    )
    return header + "".join(body), stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dlc_dir")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--commit")
    ap.add_argument("--file-commits")
    ap.add_argument("--map", default=DEFAULT_MAP)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    try:
        with open(args.map, "rb") as f:
            mapping = tomllib.load(f)
        file_commits = {}
        commit = args.commit
        if args.file_commits:
            with open(args.file_commits, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        name, c = line.split()
                        file_commits[name] = c
        elif commit is None:
            commit = subprocess.run(["git", "-C", args.dlc_dir, "rev-parse", "HEAD"],
                                    capture_output=True, text=True, check=True).stdout.strip()
        text, stats = generate(os.path.join(args.dlc_dir, "data"), mapping, commit, file_commits)
    except (Fail, OSError, subprocess.CalledProcessError, tomllib.TOMLDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for what in ("tld", "invalid"):
        for item in stats[what]:
            print(f"note: left out ({what}): {item}", file=sys.stderr)
    if stats["ads_includes"]:
        print("note: ads lists not followed: " + ", ".join(sorted(stats["ads_includes"])),
              file=sys.stderr)
    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                old = f.read()
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if old != text:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), text.splitlines(True), args.out, "regenerated"))
            print(f"{args.out} differs from its regeneration", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
