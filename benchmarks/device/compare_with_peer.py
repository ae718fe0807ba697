"""One markdown table of our training images/s beside the PyTorch peer's, cell by cell.

    python benchmarks/device/compare_with_peer.py OURS.json PEER.json

OURS.json is what `benchmarks/gpu_throughput.py --json` writes. PEER is what the peer's
`torch_peer_bench.py OUT.json` writes (a JSON list of `{model, bs, amp, channels_last, compile,
img_per_s}`), or its log: when the file is not one JSON document, every line that is a JSON
object with `img_per_s` counts, so a peer run stopped before it wrote its file still compares.

Cells pair by model and batch size: our 'float32' with the peer's fp32 (amp off), our
'mixed_bfloat16' with its bf16 autocast (with channels_last). Peer cells under torch.compile get
their own columns. The ratios compare like with like: our steps queued and waited for once, as
the peer times its own (`queued_images_per_second`, JAX only); where a run has no such number,
our `train_on_batch` rate, which waits for every step, and the ratio is marked with `*`.
Imports neither TensorFlow nor Keras.
"""

import argparse
import json
import pathlib
import sys

MISSING = "—"
PEER_SHAPE = (256, 1.0)  # torch_peer_bench.py: 256x256 images, the study's full-width models


def load_peer(path):
    """The peer's records, from its JSON list or from the JSON lines of its log."""
    text = pathlib.Path(path).read_text()
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        records = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{") and "img_per_s" in line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    if isinstance(records, dict):
        records = [records]
    return [r for r in records if isinstance(r, dict) and "img_per_s" in r]


def is_bf16(precision):
    return "bfloat16" in precision


def find_peer(peer, model, batch_size, bf16, compiled):
    """The peer's images/s for one setting, or None (the last record wins if repeated)."""
    found = None
    for r in peer:
        if (
            r.get("model") == model
            and r.get("bs") == batch_size
            and bool(r.get("amp")) == bf16
            and bool(r.get("compile")) == compiled
        ):
            found = r
    return found


def fmt(value, digits=1):
    return MISSING if value is None else f"{value:.{digits}f}"


def ratio(ours, theirs, mark=""):
    return MISSING if ours is None or not theirs else f"{ours / theirs:.2f}{mark}"


def peer_setting(record):
    if record is None:
        return MISSING
    parts = ["bf16 autocast" if record.get("amp") else "fp32"]
    if record.get("channels_last"):
        parts.append("channels_last")
    if record.get("compile"):
        parts.append("torch.compile")
    return " + ".join(parts)


def _order(cell):
    return (cell["model"] != "unet", cell["model"], is_bf16(cell["precision"]), cell["batch_size"])


def table(ours, peer):
    """Markdown lines: one row per our cell, then peer cells that none of ours pairs with."""
    lines = [
        f"ours: Keras {ours.get('provenance', {}).get('packages', {}).get('keras')} on "
        f"{ours.get('backend')}, devices {ours.get('devices')}, "
        f"{ours.get('recipe', {}).get('image_size')}px, width {ours.get('recipe', {}).get('width')}"
        f", {ours.get('recipe', {}).get('steps')} timed steps"
        + ("" if ours.get("complete") else " (INCOMPLETE run)"),
        "",
        "| model | precision | batch | ours img/s, queued | ours img/s, train_on_batch "
        "| ours compile s | peer setting | peer img/s | ours/peer | peer torch.compile img/s "
        "| ours/compiled |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    used = set()
    cells = [(r, None) for r in ours.get("results", [])]
    cells += [(None, e) for e in ours.get("errors", [])]
    cells.sort(key=lambda c: _order(c[0] or c[1]))
    for result, error in cells:
        cell = result or error
        model, batch, precision = cell["model"], cell["batch_size"], cell["precision"]
        eager = find_peer(peer, model, batch, is_bf16(precision), compiled=False)
        compiled = find_peer(peer, model, batch, is_bf16(precision), compiled=True)
        used.update(id(r) for r in (eager, compiled) if r is not None)
        queued = result and result.get("queued_images_per_second")
        per_step = result and result["images_per_second"]
        mine, mark = (queued, "") if queued else (per_step, "*")
        against_eager = ratio(mine, eager and eager["img_per_s"], mark)
        against_compiled = ratio(mine, compiled and compiled["img_per_s"], mark)
        lines.append(
            f"| {model} | {precision} | {batch} | {fmt(queued) if result else 'FAILED'} "
            f"| {fmt(per_step) if result else 'FAILED'} "
            f"| {fmt(result and result['compile_s'])} "
            f"| {peer_setting(eager)} | {fmt(eager and eager['img_per_s'])} | {against_eager} "
            f"| {fmt(compiled and compiled['img_per_s'])} | {against_compiled} |"
        )
    for r in peer:
        if id(r) not in used:
            lines.append(
                f"| {r.get('model')} | {MISSING} | {r.get('bs')} | {MISSING} | {MISSING} "
                f"| {MISSING} | {peer_setting(r)} | {fmt(r['img_per_s'])} | {MISSING} "
                f"| {MISSING} | {MISSING} |"
            )
    if any("* |" in line for line in lines):
        lines += ["", "`*`: against our train_on_batch rate (no queued measurement in this run)."]
    return lines


def cache_line(ours, path):
    """How long the first step took in the main run and again with the compilation cache."""
    path = pathlib.Path(path)
    if not path.exists():
        return f"compilation cache: no {path.name} (the check did not run or did not finish)"
    again = json.loads(path.read_text())
    if not again.get("results"):
        return f"compilation cache: {path.name} holds no result"
    warm = again["results"][0]
    key = (warm["model"], warm["precision"], warm["batch_size"])
    cold = next(
        (
            r
            for r in ours.get("results", [])
            if (r["model"], r["precision"], r["batch_size"]) == key
        ),
        None,
    )
    first = MISSING if cold is None else f"{cold['compile_s']:.1f} s"
    return (
        f"compilation cache ({again.get('compile_cache')}): first step of {key[0]} "
        f"{key[1]} batch {key[2]}: {first} in the main run, {warm['compile_s']:.1f} s in a new "
        f"process that read it from the cache"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ours", help="JSON of benchmarks/gpu_throughput.py")
    parser.add_argument("peer", help="JSON (or log) of torch_peer_bench.py")
    parser.add_argument(
        "--cache-check",
        help="JSON of a second gpu_throughput.py run of one cell, with the same compile cache",
    )
    args = parser.parse_args(argv)
    ours = json.loads(pathlib.Path(args.ours).read_text())
    peer = load_peer(args.peer) if pathlib.Path(args.peer).exists() else []
    if not peer:
        print(f"warning: no peer results in {args.peer}", file=sys.stderr)
    recipe = ours.get("recipe", {})
    if (recipe.get("image_size"), recipe.get("width")) != PEER_SHAPE:
        print(
            f"warning: ours ran at {recipe.get('image_size')}px, width {recipe.get('width')}; "
            f"the peer always runs at {PEER_SHAPE[0]}px, width {PEER_SHAPE[1]}",
            file=sys.stderr,
        )
    lines = table(ours, peer)
    if args.cache_check:
        lines += ["", cache_line(ours, args.cache_check)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
