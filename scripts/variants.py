#!/usr/bin/env python3
"""Writes variants of a scenario in samples/ for the correlation tests.

One description of the scenario -- its events, as `relive parse --json`
reads them from the scenario's folders -- is written back out, per host
folder, in several formats relive reads and in several shapes:

  ecs            every folder as Winlogbeat-style NDJSON (rendered text)
  xml            every folder as `wevtutil qe /f:RenderedXml` events; the
                 cluster log's lines as a Get-ClusterLog file
  xml-notext     the same without RenderingInfo for every event whose
                 template relive's catalog has (parsers/src/catalog.rs) and
                 whose data, in its order, renders its very text: relive
                 must render them (the count is printed)
  shuffled-twice every event twice, once as NDJSON and once as XML, in a
                 shuffled order (files interleave; copies across formats)
  only-FOLDER    one folder's logs alone (the source's, the destination's,
                 the cluster collector's)

Beside each variant folder, `VARIANT.json`: `{"same": true}` when the variant
must give the scenario's incidents (root cause, VM, hosts, status), or
`{"allowed": [...]}` with the causes a variant missing evidence may give:
the scenario's cause, `unknown`, and the look-alike the playbook names
(`[[lookalike]]`), which is the documented weaker reading when the telling
evidence is in the folder left out. A variant that keeps no failure event
expects no incident.

Usage: scripts/variants.py SCENARIO_DIR OUT_DIR   (RELIVE = the binary)
"""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
# Local offsets of the formats without a zone (samples/README.md).
ZONES = {
    "shared-storage-path-missing": "+02:00",
    "successful-migration": "-05:00",
    "background-day-4node": "-07:00",
}
FAILURE_IDS = {
    ("microsoft-windows-hyper-v-high-availability", 21502),
    ("microsoft-windows-hyper-v-high-availability", 21111),
    ("microsoft-windows-hyper-v-high-availability", 21501),
    ("microsoft-windows-hyper-v-vmms", 21024),
    ("relive-metrics", 2),
}
LEVELS = {"critical": 1, "error": 2, "warning": 3, "information": 4, "verbose": 5}
# Fields relive appends to event_data from the text (see own_data).
ADDED = {"VmName", "VmId"}


def catalog():
    """(provider lower, event id) -> template, from relive's message catalog."""
    text = (ROOT / "parsers/src/catalog.rs").read_text()
    names = dict(re.findall(r'const (\w+): &str = "([^"]+)";', text))
    found = re.findall(r'\bt\((\w+), (\d+), "((?:[^"\\]|\\.)*)"\)', text)
    unescape = lambda t: re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), t)
    return {(names[p].lower(), int(i)): unescape(t) for p, i, t in found if p in names}


def render(template, values):
    """The catalog's rendering (parsers/src/catalog.rs): %n is the n-th value."""
    def one(m):
        if m.group(0) == "%%":
            return "%"
        n = int(m.group(1))
        return values[n - 1] if 0 < n <= len(values) else m.group(0)
    return re.sub(r"%%|%(\d{1,2})(?:![^!]*!)?", one, template)


def renders_alike(e, templates):
    """Whether relive renders the same text from the event's own data: the
    samples' data fields are not always in the order Windows writes them
    (their field names and order are partly synthetic), and such an event
    keeps its text in the no-text variant."""
    key = (e["winlog"]["provider_name"].lower(), e["winlog"]["event_id"])
    data = own_data(e)
    if key not in templates or not data:
        return False
    squash = lambda t: " ".join(t.split())
    return squash(render(templates[key], list(data.values()))) == squash(e.get("message", ""))


def lookalikes():
    """Root cause -> the causes its playbook names as look-alikes."""
    out = {}
    for f in (ROOT / "playbooks").glob("*.toml"):
        out[f.stem] = re.findall(r'\[\[lookalike\]\]\s*cause = "([^"]+)"', f.read_text())
    return out


def events(scenario):
    relive = os.environ.get("RELIVE", "relive")
    zone = ZONES.get(scenario.name, "+00:00")
    out = subprocess.run(
        [relive, "parse", "--json", f"--timezone={zone}", str(scenario)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # Metric samples print as their own JSON lines: a failed one is also
    # an event (`relive-metrics` 2), which is what the variants keep.
    lines = (json.loads(line) for line in out.splitlines() if line.strip())
    return [e for e in lines if "winlog" in e]


def folder(e, scenario):
    path = Path(e["log"]["file"]["path"])
    try:
        return path.resolve().relative_to(scenario.resolve()).parts[0]
    except ValueError:
        return path.parent.name


def is_failure(e):
    w = e["winlog"]
    if w["channel"] == "cluster.log":
        m = e.get("message", "")
        return "Live migration of " in m and " failed" in m
    return (w["provider_name"].lower(), w["event_id"]) in FAILURE_IDS


def own_data(e):
    """The event's own data fields: relive's ECS line appends `VmName` and
    `VmId` it pulled from the text after them, so a trailing run of those
    whose value the text carries is dropped."""
    items = list(e["winlog"].get("event_data", {}).items())
    text = e.get("message", "").lower()
    while items and items[-1][0] in ADDED and items[-1][1].lower() in text:
        items.pop()
    return dict(items)


def ecs_line(e):
    w = e["winlog"]
    out = {
        "@timestamp": e["@timestamp"],
        "host": {"name": e["host"]["name"]},
        "winlog": {
            "channel": w["channel"],
            "provider_name": w["provider_name"],
            "event_id": w["event_id"],
            "computer_name": w["computer_name"],
            "event_data": own_data(e),
        },
        "log": {"level": e["log"]["level"]},
        "message": e.get("message", ""),
    }
    for key in ("record_id", "version"):
        if key in w:
            out["winlog"][key] = w[key]
    if e.get("error", {}).get("code"):
        out["error"] = {"code": e["error"]["code"]}
    return json.dumps(out)


def xml_event(e, render=True):
    w = e["winlog"]
    a = lambda s: escape(str(s), {"'": "&apos;"})
    parts = [
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>",
        f"<Provider Name='{a(w['provider_name'])}'/>",
        f"<EventID>{w['event_id']}</EventID>",
        f"<Version>{w.get('version', 0)}</Version>",
        f"<Level>{LEVELS.get(e['log']['level'], 4)}</Level>",
        f"<TimeCreated SystemTime='{e['@timestamp']}'/>",
    ]
    if "record_id" in w:
        parts.append(f"<EventRecordID>{w['record_id']}</EventRecordID>")
    parts.append(f"<Channel>{a(w['channel'])}</Channel><Computer>{a(w['computer_name'])}</Computer></System>")
    data = own_data(e)
    if data:
        parts.append("<EventData>")
        parts += [f"<Data Name='{a(k)}'>{a(v)}</Data>" for k, v in data.items()]
        parts.append("</EventData>")
    if render and e.get("message"):
        parts.append(f"<RenderingInfo Culture='en-US'><Message>{a(e['message'])}</Message></RenderingInfo>")
    parts.append("</Event>")
    return "".join(parts)


def cluster_log(evs):
    lines = ["[=== Cluster ===]", "UTC= localtime + 0", ""]
    level = {"error": "ERR", "warning": "WARN", "critical": "CRIT"}
    for e in evs:
        d = e["winlog"].get("event_data", {})
        t = e["@timestamp"]  # 2026-05-12T19:47:52.016000000Z
        stamp = f"{t[0:4]}/{t[5:7]}/{t[8:10]}-{t[11:23]}"
        comp = f"[{d['Component']}] " if d.get("Component") else ""
        msg = e.get("message", "").replace("\n", " ")
        lines.append(
            f"{d.get('ProcessId', '00000000')}.{d.get('ThreadId', '00000000')}::{stamp} "
            f"{level.get(e['log']['level'], 'INFO'):<5} {comp}{msg}"
        )
    return "\n".join(lines) + "\n"


def write_folder(out, name, evs, fmt, renderable):
    out.mkdir(parents=True, exist_ok=True)
    logs = [e for e in evs if e["winlog"]["channel"] == "cluster.log"]
    rest = [e for e in evs if e["winlog"]["channel"] != "cluster.log"]
    if fmt == "ecs":
        (out / f"{name}.ndjson").write_text("".join(ecs_line(e) + "\n" for e in evs))
        return
    if logs:
        (out / f"{name}_cluster.log").write_text(cluster_log(logs))
    if rest:
        keep = lambda e: fmt != "xml-notext" or not renders_alike(e, renderable)
        (out / f"{name}.xml").write_text("\n".join(xml_event(e, keep(e)) for e in rest) + "\n")


def main():
    scenario, out = Path(sys.argv[1]), Path(sys.argv[2])
    evs = events(scenario)
    expected = json.loads((scenario / "expected.json").read_text())
    causes = sorted({i["root_cause"] for i in expected})
    alike = lookalikes()
    renderable = catalog()
    by_folder = {}
    for e in evs:
        by_folder.setdefault(folder(e, scenario), []).append(e)

    def variant(name, write, expect):
        write(out / name)
        (out / f"{name}.json").write_text(json.dumps(expect))

    notext = sum(
        1 for e in evs if e["winlog"]["channel"] != "cluster.log" and renders_alike(e, renderable)
    )
    print(f"{scenario.name}: {len(evs)} events, {notext} written without text", file=sys.stderr)
    for fmt in ("ecs", "xml", "xml-notext"):
        variant(
            fmt,
            lambda d, fmt=fmt: [write_folder(d / f, f, es, fmt, renderable) for f, es in by_folder.items()],
            {"same": True, "without_text": notext if fmt == "xml-notext" else 0},
        )
    # Every event twice (NDJSON and XML), files in a shuffled order of events.
    shuffled = list(evs)
    random.Random(19).shuffle(shuffled)

    def twice(d):
        d.mkdir(parents=True, exist_ok=True)
        (d / "all.ndjson").write_text("".join(ecs_line(e) + "\n" for e in shuffled))
        rest = [e for e in reversed(shuffled) if e["winlog"]["channel"] != "cluster.log"]
        (d / "all.xml").write_text("\n".join(xml_event(e) for e in rest) + "\n")

    variant("shuffled-twice", twice, {"same": True})
    if len(by_folder) > 1:
        for f, es in by_folder.items():
            allowed = sorted(set(causes) | {"unknown"} | {a for c in causes for a in alike.get(c, [])})
            failures = any(is_failure(e) for e in es)
            variant(
                f"only-{f}",
                lambda d, f=f, es=es: write_folder(d / f, f, es, "ecs", set()),
                {"allowed": allowed if failures else [], "failures": failures},
            )


if __name__ == "__main__":
    main()
