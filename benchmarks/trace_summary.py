"""Where the time of a JAX profiler trace went: per process, busy time and the costliest events.

    python benchmarks/trace_summary.py TRACE [--top 25] [--json summary.json]

TRACE is a `perfetto_trace.json.gz` written by `jax.profiler.trace(dir,
create_perfetto_trace=True)`, or a directory holding one (the newest is read). On a GPU the
trace has a process per device (`/device:GPU:0`) whose threads are its streams and whose events
are kernels; on a CPU, the host's threads and XLA's executions. For each process it prints the
time from its first event's start to its last event's end ("span"), the time at least one of
its events was running ("busy"; on a GPU, what is left of the span is the device waiting for the
host), and the events by total duration, each with a coarse category read from its name
(convolution, gemm, transpose, copy, reduction, fusion or other). Host events nest, so their
totals overlap; kernels on one stream do not.

Needs only the Python standard library, so it runs wherever the trace is.
"""

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys

TRACE_FILE = "perfetto_trace.json.gz"
# Checked in order: cuDNN/CUTLASS convolution kernels are also GEMMs; "convert" is not "conv".
CATEGORIES = (
    ("convolution", re.compile(r"conv(?!ert)|cudnn|fprop|dgrad|wgrad|implicit_gemm", re.I)),
    ("gemm", re.compile(r"gemm|cublas|dot|matmul", re.I)),
    ("transpose", re.compile(r"transpose", re.I)),
    ("copy", re.compile(r"copy|memcpy|memset", re.I)),
    ("reduction", re.compile(r"reduce|reduction", re.I)),
    ("fusion", re.compile(r"fusion|loop_|input_|kernel", re.I)),
)


def category(name):
    """A coarse kind of work for an event name (`'other'` when none matches)."""
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other"


def find_trace(path):
    """The trace file itself, or the newest `perfetto_trace.json.gz` under a directory."""
    path = pathlib.Path(path)
    if path.is_file():
        return path
    found = sorted(path.rglob(TRACE_FILE), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no {TRACE_FILE} under {str(path)!r}")
    return found[-1]


def load_events(path):
    """`(events, process_names)`: the complete ('X') events and a name for each process id."""
    path = find_trace(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    raw = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {
        e["pid"]: e.get("args", {}).get("name", str(e["pid"]))
        for e in raw
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    events = [e for e in raw if e.get("ph") == "X" and "dur" in e and "ts" in e]
    return events, names


def busy_time(intervals):
    """Length of the union of `(start, end)` intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def summarise(events, process_names, top=25):
    """Per process: span, busy time, and the `top` event names by total duration (µs)."""
    by_process = collections.defaultdict(list)
    for event in events:
        by_process[event["pid"]].append(event)
    summary = {}
    for pid, group in by_process.items():
        totals = collections.defaultdict(lambda: [0.0, 0])
        categories = collections.defaultdict(float)
        for event in group:
            totals[event["name"]][0] += float(event["dur"])
            totals[event["name"]][1] += 1
            categories[category(event["name"])] += float(event["dur"])
        starts = [float(e["ts"]) for e in group]
        ends = [float(e["ts"]) + float(e["dur"]) for e in group]
        ranked = sorted(totals.items(), key=lambda item: -item[1][0])
        summary[process_names.get(pid, str(pid))] = {
            "events": len(group),
            "span_us": round(max(ends) - min(starts), 1),
            "busy_us": round(busy_time(zip(starts, ends, strict=True)), 1),
            "total_us_by_category": {k: round(v, 1) for k, v in sorted(categories.items())},
            "top": [
                {
                    "name": name,
                    "category": category(name),
                    "total_us": round(total, 1),
                    "count": count,
                }
                for name, (total, count) in ranked[:top]
            ],
        }
    return summary


def render(summary):
    """Markdown lines: for each process, span and busy time, then its costliest events."""
    lines = []
    for process, info in sorted(summary.items(), key=lambda item: -item[1]["busy_us"]):
        span, busy = info["span_us"], info["busy_us"]
        share = f"{100 * busy / span:.0f} %" if span else "—"
        lines += [
            f"### {process}: {info['events']} events, span {span / 1000:.2f} ms, "
            f"busy {busy / 1000:.2f} ms ({share})",
            "",
            "by category (ms): "
            + ", ".join(f"{k} {v / 1000:.2f}" for k, v in info["total_us_by_category"].items()),
            "",
            "| event | category | total ms | count |",
            "|---|---|---:|---:|",
        ]
        for row in info["top"]:
            name = row["name"] if len(row["name"]) <= 90 else row["name"][:87] + "..."
            name = name.replace("|", "\\|")
            lines.append(
                f"| `{name}` | {row['category']} | {row['total_us'] / 1000:.3f} | {row['count']} |"
            )
        lines.append("")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help=f"a {TRACE_FILE}, or a directory holding one")
    parser.add_argument("--top", type=int, default=25, help="events listed per process")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args(argv)
    try:
        events, names = load_events(args.trace)
    except (OSError, ValueError, KeyError) as error:
        print(f"trace_summary: cannot read {args.trace}: {error}", file=sys.stderr)
        return 1
    summary = summarise(events, names, args.top)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(render(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
