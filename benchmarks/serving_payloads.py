"""Request size and time from request bytes to mask: uint8 pixels as JSON against the encoded file.

TF Serving's REST API takes JSON. Sent to `serving_default`, an image is one JSON number per
pixel and channel; sent to `serving_encoded`, it is the JPEG (or PNG) file in base64. For one
PH2 image resized to each `--size`, this builds both request bodies as a client would, and times,
in this one process, what the server does with each until the mask is computed:

- uint8: `json.loads` of the body, its nested lists made a uint8 tensor (as TF Serving turns
  JSON into a tensor), then `serving_default`, `mask` fetched;
- encoded: `json.loads`, base64 decoding, then `serving_encoded` (decoding in the graph), its
  PNG mask fetched; and `serving_encoded_probabilities`, which also encodes the probabilities.

It also times encoding the probabilities as a 16-bit PNG at zlib's default level and at level 1,
the one the signature uses.

The uint8 request and the PNG carry the pixels the JPEG decodes to (Pillow), so every request
asks for the same image, and the script fails unless all masks are equal pixel for pixel. Sizes
are the JSON bodies' bytes; the answer's size is that of the JSON TF Serving would write (row
format, `_bytes` outputs in base64, numbers printed as it prints them), for comparison. HTTP and
TF Serving's own C++ parsing are not measured. Like `served_scores.py`, it never imports
`ph2_tf`: it measures the SavedModel as a TF Serving user receives it.

    TF_ENABLE_ONEDNN_OPTS=0 taskset -c 0,1 python benchmarks/serving_payloads.py \\
        --saved-model saved_models/ph2_unet/6 --image "$(find ../shared/ph2 -name IMD002.png)"
"""

import argparse
import base64
import importlib.metadata
import io
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from functools import partial

import numpy as np
import tensorflow as tf
from PIL import Image

SIZES = ("768x560", "2048x1536")


def _git_commit():
    """The checkout's commit, marked `-dirty` when files differ from it, or None."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{commit}-dirty" if dirty else commit or None


def _cpu():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _printed_as_tf_serving_prints(values):
    """float32 values as the doubles whose shortest text is what TF Serving writes: 6
    significant digits, or 9 where 6 do not give the value back."""
    flat = values.ravel()
    short = np.char.mod("%.6g", flat)
    text = np.where(short.astype(np.float32) == flat, short, np.char.mod("%.9g", flat))
    return text.astype(np.float64).reshape(values.shape)


def _answer_bytes(outputs):
    """Bytes of the JSON TF Serving writes for `outputs` in the row format (", " between array
    items, as its writer puts them; its indentation left out)."""
    predictions = [{} for _ in next(iter(outputs.values()))]
    for name, values in outputs.items():
        if values.dtype.kind == "f":
            values = _printed_as_tf_serving_prints(values)
        for prediction, value in zip(predictions, values, strict=True):
            if isinstance(value, bytes):
                prediction[name] = {"b64": base64.b64encode(value).decode()}
            else:
                prediction[name] = np.asarray(value).tolist()
    return len(json.dumps({"predictions": predictions}))


def _numpy(function, *args):
    return function(*args).numpy()


def _timed(step, warmup, runs):
    """p50, p95 (ms) of `runs` calls of `step` after `warmup` untimed ones, and its last result."""
    for _ in range(warmup):
        result = step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = step()
        times.append((time.perf_counter() - start) * 1000)
    return (*np.percentile(times, [50, 95]), result)


def measure(loaded, image, quality, warmup, runs):
    """The rows of one image size: per request, its bytes, the answer's bytes, p50 and p95 ms;
    per zlib level of the 16-bit probability PNG, its bytes and its encoding's p50 and p95 ms."""
    jpeg_buffer = io.BytesIO()
    image.save(jpeg_buffer, format="JPEG", quality=quality)
    # What the JPEG decodes to: the uint8 and PNG requests send the same image.
    pixels = np.asarray(Image.open(io.BytesIO(jpeg_buffer.getvalue())).convert("RGB"))
    png_buffer = io.BytesIO()
    Image.fromarray(pixels).save(png_buffer, format="PNG")
    files = {f"JPEG q{quality}": jpeg_buffer.getvalue(), "PNG": png_buffer.getvalue()}

    default = loaded.signatures["serving_default"]
    uint8_body = json.dumps(
        {"signature_name": "serving_default", "instances": [pixels.tolist()]},
        separators=(",", ":"),
    ).encode()

    def uint8_mask():
        request = json.loads(uint8_body)
        images = tf.constant(np.asarray(request["instances"], np.uint8))
        return default(images=images)

    p50, p95, outputs = _timed(uint8_mask, warmup, runs)
    expected = outputs["mask"].numpy()[0, ..., 0] * 255
    levels = np.round(outputs["probabilities"].numpy()[0] * 65535).astype(np.uint16)
    png_rows = []
    for compression in (-1, 1):  # zlib's default level (6), and the fastest
        encode = tf.function(partial(tf.io.encode_png, compression=compression))
        *times, png = _timed(partial(_numpy, encode, levels), warmup, runs)
        png_rows.append((compression, len(png), *times))
    rows = [
        (
            "serving_default",
            "uint8 pixels as JSON numbers",
            len(uint8_body),
            _answer_bytes({name: value.numpy() for name, value in outputs.items()}),
            p50,
            p95,
        )
    ]
    for signature in ("serving_encoded", "serving_encoded_probabilities"):
        for kind, data in files.items():
            if signature == "serving_encoded_probabilities" and kind == "PNG":
                continue
            serve = loaded.signatures[signature]
            body = json.dumps(
                {
                    "signature_name": signature,
                    "instances": [{"images_bytes": {"b64": base64.b64encode(data).decode()}}],
                },
                separators=(",", ":"),
            ).encode()

            def encoded_mask(body=body, serve=serve):
                request = json.loads(body)
                sent = [base64.b64decode(i["images_bytes"]["b64"]) for i in request["instances"]]
                return serve(images_bytes=tf.constant(sent))

            p50, p95, outputs = _timed(encoded_mask, warmup, runs)
            mask = tf.io.decode_png(outputs["mask_png_bytes"][0]).numpy()[..., 0]
            if not np.array_equal(mask, expected):
                sys.exit(f"{signature} on the {kind} gave another mask than serving_default")
            answer = _answer_bytes({name: value.numpy() for name, value in outputs.items()})
            rows.append((signature, f"{kind} file, base64", len(body), answer, p50, p95))
    return rows, png_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", required=True, help="SavedModel version directory")
    parser.add_argument("--image", required=True, help="the image to resize and send")
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="WIDTHxHEIGHT, each")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    loaded = tf.saved_model.load(args.saved_model)
    source = Image.open(args.image).convert("RGB")
    print(
        f"{args.saved_model}; {args.image} resized (bilinear) to each size; JPEG quality "
        f"{args.quality}; p50 and p95 of {args.runs} runs after {args.warmup} warm-up"
    )
    print(
        f"  commit {_git_commit()}, TensorFlow {tf.__version__}, "
        f"Keras {importlib.metadata.version('keras')}, "
        f"{_cpu()}, {len(os.sched_getaffinity(0))} CPU cores available, float32, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f} at the start"
    )
    print()
    png_table = []
    print("| size | signature | request | request bytes | answer bytes | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        width, height = map(int, size.split("x"))
        image = source.resize((width, height), Image.Resampling.BILINEAR)
        rows, png_rows = measure(loaded, image, args.quality, args.warmup, args.runs)
        for signature, request, sent, answer, p50, p95 in rows:
            print(
                f"| {width}×{height} | `{signature}` | {request} | {sent:,} | {answer:,} | "
                f"{p50:.1f} | {p95:.1f} |",
                flush=True,
            )
        for compression, size_bytes, p50, p95 in png_rows:
            level = "default (6)" if compression < 0 else str(compression)
            png_table.append(
                f"| {width}×{height} | {level} | {size_bytes:,} | {p50:.1f} | {p95:.1f} |"
            )
    print()
    print("The probabilities as a 16-bit PNG (`tf.io.encode_png`), by zlib level:")
    print()
    print("| size | zlib level | PNG bytes | encoding p50 ms | p95 ms |")
    print("|---|---|---|---|---|")
    print("\n".join(png_table))
    print()
    print(f"load average {os.getloadavg()[0]:.2f} at the end; masks equal pixel for pixel")
    assert not any(name.split(".")[0] == "ph2_tf" for name in sys.modules), "ph2_tf was imported"


if __name__ == "__main__":
    main()
