"""Model cards: the `README.md` of a served model, generated from what its files record.

A model's card, `<base_dir>/<model_name>/README.md`, describes its highest version, the one TF
Serving and `predict` serve. Every number and every fact about that version in it is read from
the version's files; the rest holds for every model of this project (for dermoscopy, not a
medical device). The files:

- `metrics.json` (`ph2_tf.serving.publish`): the training config, the soup it was made by, the
  serving options, the PH2 scores measured through the serving signature and their provenance;
- the SavedModel: its signatures, the number of values in its variables, its size;
- `card.json`, optional: further measurements of this version, copied from committed result
  files, each row naming in `source` the file its numbers come from. It holds two lists:
  - `scores`: rows of `data` (which images), `signature`, optionally `images` (how many), any
    metric columns (`jaccard`, `dice`, ...), and `source`;
  - `latency`: rows of `signature`, `input`, `p50_ms`, optionally `p95_ms` and `conditions`,
    and `source`.

What a file does not record is left out, never guessed. Cards are regenerated, not edited:
`ph2-seg card`, and `export` after it writes a version.
"""

import importlib
import json
import math
import textwrap
from pathlib import Path

from ph2_tf import files
from ph2_tf.serving import export, publish, versions

CARD_FILE = "README.md"
LINE_WIDTH = 100
EXTRA_FILE = "card.json"
# Where a run's data and outputs lived on the machine that trained it: no part of the recipe.
MACHINE_PATHS = ("data_dir", "manual_dir", "out_dir")
ONE_PASS = "one model call"
FLIP_AVERAGE = (
    "the mean probability over the image and its left-right and up-down flips (one model call "
    "on three times the batch)"
)
SIGNATURE_PURPOSES = {
    export.SIGNATURE: ONE_PASS,
    export.SINGLE_PASS_SIGNATURE: ONE_PASS,
    export.FLIP_TTA_SIGNATURE: FLIP_AVERAGE,
    export.ENCODED_SIGNATURE: "image files (JPEG, PNG, BMP) decoded in the graph as `predict` "
    "reads them; per image, `serving_default`'s mask as a PNG at the image's size, the lesion's "
    "share of the pixels and its bounding box",
    export.ENCODED_PROBABILITIES_SIGNATURE: "the same, and the probabilities as a 16-bit PNG",
}
_SCORE_KEYS = ("data", "signature", "source")
_LATENCY_KEYS = ("signature", "input", "p50_ms", "source")
_LATENCY_COLUMNS = ("signature", "input", "p50_ms", "p95_ms", "conditions", "source")


def write_card(model_dir):
    """Writes the card of a model's highest version to `<model_dir>/README.md`, atomically.

    Args:
        model_dir: `<base_dir>/<model_name>`, holding at least one version.

    Returns:
        The path written, as a `pathlib.Path`.

    Raises:
        ValueError: no version in `model_dir`, or a `metrics.json`, `card.json` or SavedModel
            that cannot be read; nothing is written then.
    """
    served = versions.served_versions(model_dir)
    if not served:
        raise ValueError(f"no SavedModel version under {str(model_dir)!r}")
    path = Path(model_dir) / CARD_FILE
    files.write_text(path, model_card(served[-1]))
    return path


def model_card(version_dir):
    """The Markdown card of one published version, from its files.

    Args:
        version_dir: `<base_dir>/<model_name>/<version>`.

    Returns:
        The card's text.

    Raises:
        ValueError: a `metrics.json` or `card.json` that is not the JSON described above, or a
            damaged SavedModel.
    """
    version_dir = Path(version_dir)
    metrics = _read_json(version_dir / publish.METRICS_FILE)
    extra = _read_extra(version_dir / EXTRA_FILE)
    source = metrics.get("source") if isinstance(metrics.get("source"), dict) else {}
    config = _training_config(source)
    sections = [
        _header(version_dir, metrics),
        _section("The model", _model_lines(version_dir, config)),
        _section("Training data", _data_lines(metrics, config, source)),
        _section("Recipe", _recipe_lines(source, config)),
        _section("Scores", _score_lines(metrics, extra)),
        _section("Latency", _latency_lines(extra)),
        _section("Signatures", _signature_lines(version_dir, source)),
        _section("Limits", _limit_lines(source, config)),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _read_json(path):
    """A JSON object from `path`, `{}` when there is no such file."""
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{str(path)!r} does not hold a JSON object")
    return value


def _read_extra(path):
    """`card.json`'s rows, `{"scores": [...], "latency": [...]}`, checked."""
    extra = _read_json(path)
    unknown = sorted(set(extra) - {"scores", "latency"})
    if unknown:
        raise ValueError(f"{str(path)!r}: unknown key {unknown[0]!r} (expected scores, latency)")
    for kind, required in (("scores", _SCORE_KEYS), ("latency", _LATENCY_KEYS)):
        rows = extra.setdefault(kind, [])
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"{str(path)!r}: {kind} must be a list of objects")
        for index, row in enumerate(rows):
            missing = [key for key in required if not row.get(key)]
            if missing:
                raise ValueError(f"{str(path)!r}: {kind}[{index}] has no {missing[0]!r}")
    return extra


def _training_config(source):
    """The training config a version records: `config` (export), else the tuner's record."""
    if isinstance(source.get("config"), dict):
        return source["config"]
    if isinstance(source.get("configuration"), dict):
        return {
            **source["configuration"],
            **{k: source[k] for k in ("seed", "profile") if k in source},
        }
    return {}


def _section(title, lines):
    """A `## title` section, or None when there is nothing to say."""
    lines = [line for line in lines if line is not None]
    return _wrap([f"## {title}", "", *lines]) if lines else None


def _wrap(lines):
    """Lines joined, prose and list items wrapped at `LINE_WIDTH`; table rows as they are."""
    return "\n".join(
        line
        if line.startswith(("|", "#")) or len(line) <= LINE_WIDTH
        else textwrap.fill(
            line,
            LINE_WIDTH,
            subsequent_indent="  " if line.startswith("- ") else "",
            break_long_words=False,
            break_on_hyphens=False,
        )
        for line in lines
    )


def _value(value):
    """A recorded value as the card shows it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _table(columns, rows):
    """Markdown table lines; a cell a row does not have shows as —."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_value(row[c]) if c in row else "—" for c in columns) + " |")
    return lines


def _header(version_dir, metrics):
    lines = [
        f"# Model card: `{version_dir.parent.name}`",
        "",
        f"Generated by `ph2-seg card` from the files of `{version_dir.name}/`: regenerate it, do "
        "not edit it.",
        "",
        f"It describes **version {version_dir.name}**, the highest version: the one TF Serving and "
        "`ph2-seg predict` serve. Older versions are listed in `docs/models.md`.",
        "",
        "**Not a medical device.** For research and teaching: it outlines a skin lesion in a "
        "dermoscopic image; it does not diagnose.",
    ]
    if not metrics:
        lines += [
            "",
            f"Version {version_dir.name} has no `{publish.METRICS_FILE}`: its training "
            "and scores are not recorded.",
        ]
    return _wrap(lines)


def _model_lines(version_dir, config):
    name = config.get("model")
    yield f"- Architecture: `{name}`, {_architecture(name)}" if name else None
    if "width" in config:
        yield f"- Width: {_value(config['width'])} × the study's filter counts"
    if "image_size" in config:
        size = config["image_size"]
        yield (
            f"- Input: uint8 RGB images of any size, resized to {size}×{size} inside the serving "
            "graph"
        )
    parameters = _parameters(version_dir)
    yield f"- Parameters as served (values in the SavedModel's variables): {parameters:,}"
    model_bytes = sum(
        p.stat().st_size
        for p in [version_dir / "saved_model.pb", *(version_dir / "variables").glob("*")]
        if p.is_file()
    )
    yield (
        f"- SavedModel: {model_bytes / 2**20:.1f} MiB (`saved_model.pb` and `variables/`), "
        "in TF Serving's layout"
    )


def _architecture(name):
    """The first docstring line of the model's builder module, `ph2_tf.models.<name>`."""
    try:
        module = importlib.import_module(f"ph2_tf.models.{name}")
    except ImportError:
        return "an architecture this package no longer builds"
    return module.__doc__.strip().splitlines()[0]


def _parameters(version_dir):
    """The number of values in a SavedModel's variables, read from its checkpoint index."""
    import tensorflow as tf

    try:
        stored = tf.train.list_variables(str(version_dir / "variables" / "variables"))
    except tf.errors.OpError as error:
        message = error.message.splitlines()[0]
        raise ValueError(f"cannot read the variables of {str(version_dir)!r}: {message}") from None
    # The checkpoint also holds its object graph, a scalar string: not a parameter.
    return sum(math.prod(shape) for _, shape in stored if shape)


def _extra_training(source, config):
    """`(folder name, folds, held-out folds)` of the other images a version trained on, or None.

    Read from its runs' configs: the soup's ingredients', else the one training config.
    """
    soup = source.get("soup") if isinstance(source.get("soup"), dict) else {}
    configs = [soup.get("configs", {}).get(name) for name in soup.get("ingredients", [])]
    configs = [c for c in configs if isinstance(c, dict)] or [config]
    folders = {c.get("extra_train_dir") for c in configs} - {None}
    if not folders:
        return None
    folds = {c.get("extra_folds") for c in configs}
    held_out = sorted({c.get("extra_held_out_fold") for c in configs} - {None})
    return (
        ", ".join(sorted(Path(f).name for f in folders)),
        max(folds - {None}, default=None),
        held_out,
    )


def _data_lines(metrics, config, source):
    if not metrics or not config:
        return []
    splits = metrics.get("splits", {})

    def images(split):
        count = splits.get(split, {}).get("num_images")
        return f" ({count} images)" if count else ""

    extra = _extra_training(source, config)
    trained_on = ["- Trained on the PH² `train` split (its case ids: `tfds_ph2/ph2/splits.json`)."]
    if extra is not None:
        folder, folds, held_out = extra
        trained_on = [
            "- Trained on the PH² `train` split (its case ids: `tfds_ph2/ph2/splits.json`) and "
            f"on the image and mask pairs of `{folder}`, from other clinics: **not a PH²-only "
            "model**, and its scores on those pairs are not an evaluation."
        ]
        if folds:
            seen = "every pair was" if len(held_out) > 1 else "the other folds were"
            trained_on.append(
                f"- Each run left out one of {folds} folds of `{folder}` (pair i, in name "
                f"order, in fold i mod {folds}) to be scored on it; the runs in these weights "
                f"left out folds {', '.join(map(str, held_out))}, so {seen} trained on."
            )
    return [
        *trained_on,
        "- Chosen on the PH² `validation` split"
        + images(publish.SELECTION_SPLIT)
        + ": the best epoch by validation Jaccard, soup ingredients, and `export --if-better` "
        "against the served version.",
        *_publishing_lines(source),
        f"- The PH² `test` split{images('test')} only scored it (below).",
    ]


def _publishing_lines(source):
    """The noise rule's decision that published this version, where its record holds one."""
    record = source.get("publishing")
    if not isinstance(record, dict) or "selection_signal" not in record:
        return []
    gains = record.get("gains", {})
    signal = record["selection_signal"]
    measured = gains.get(signal, {})
    guards = [name for name in gains if name != signal]
    line = f"- Published by the noise rule with `{signal}` as the selection signal"
    if record.get("forced"):
        line = f"- Published by hand, over the noise rule's refusal on `{signal}`"
    if "gain" in measured and "standard_error" in measured:
        line += f" (paired gain {measured['gain']:+.4f} ± {measured['standard_error']:.4f})"
    if guards:
        line += ", and " + ", ".join(f"`{name}`" for name in guards) + " as guards"
    return [line + " (`docs/models.md`, the publishing rule)."]


def _recipe_lines(source, config):
    again = source.get("exported_again_from")
    if again:
        yield (
            f"- Weights of `{again}`, exported again with the serving options below; nothing was "
            "trained for this version."
        )
    soup = source.get("soup") if isinstance(source.get("soup"), dict) else {}
    ingredients = soup.get("ingredients", [])
    if soup.get("method"):
        yield f"- The weights are a weight soup: {soup['method']}."
    if soup.get("selection"):
        # A uniform soup keeps every ingredient: the set scored it, and chose nothing.
        if soup.get("method", "").startswith("uniform"):
            yield f"- Every ingredient kept; the soup scored by {soup['selection']}."
        else:
            yield f"- Soup ingredients chosen by {soup['selection']}."
    if "validation_jaccard" in soup:
        yield f"- The soup's validation Jaccard when made: {soup['validation_jaccard']:.4f}."
    if "selection_jaccard" in soup:
        yield (
            f"- The soup's Jaccard on {Path(soup['selection_set']).name} when made: "
            f"{soup['selection_jaccard']:.4f}."
        )
    commit = ((soup.get("provenance") or {}).get("git") or {}).get("commit")
    if commit:
        yield f"- The soup was made at commit {commit}."
    serving = source.get("serving", {})
    if "threshold" in serving:
        yield (
            f"- Serving threshold: {_value(serving['threshold'])} (`mask` is 1 where the lesion "
            "probability is at least this)."
        )
    most_confident = serving.get("component_rule") == "most_confident"
    if "largest_component" in serving and most_confident:
        yield (
            "- One component: "
            + (
                "yes (every signature's `mask` keeps only the lesion of highest mean "
                "probability, its holes filled)."
                if serving["largest_component"]
                else "no (the thresholded mask as it is)."
            )
        )
    elif "largest_component" in serving:
        yield (
            "- Largest component: "
            + (
                "yes (every signature's `mask` keeps only the largest lesion, its holes filled)."
                if serving["largest_component"]
                else "no (the thresholded mask as it is)."
            )
        )
    if serving.get("refine") is not None:
        yield (
            f"- Refinement: a second pass of the model on a window {_value(serving['refine'])} "
            "times the bounding box of the lesion the first pass finds"
            + (" (its most confident component)" if most_confident else "")
            + ", whose probabilities replace the first pass's there "
            "(`ph2_tf.serving.refinement`)."
        )
    if serving.get("flip_tta"):
        yield (
            "- Flip test-time augmentation: yes (`serving_default` averages the probabilities of "
            "the image and of its left-right and up-down flips in every pass; "
            "`serving_single_pass` makes one, in under half the time)."
        )
    ingredient_configs = [soup.get("configs", {}).get(name) for name in ingredients]
    configs = (
        ingredient_configs if ingredients and all(ingredient_configs) else [config] * bool(config)
    )
    if not configs:
        return
    fields = [f for f in dict.fromkeys(k for c in configs for k in c) if f not in MACHINE_PATHS]
    shared = [f for f in fields if all(f in c and c[f] == configs[0][f] for c in configs)]
    differing = [f for f in fields if f not in shared]
    yield ""
    yield "Training config" + (" shared by the soup's ingredients:" if len(configs) > 1 else ":")
    yield ""
    yield from _table(("field", "value"), [{"field": f, "value": configs[0][f]} for f in shared])
    if len(configs) > 1:
        # Only a greedy soup scores each ingredient alone; a uniform one scores their mean.
        scores = {step["added"]: step["score"] for step in soup.get("steps", []) if "score" in step}
        scored_on = Path(soup["selection_set"]).name if soup.get("selection_set") else "validation"
        score_column = f"{scored_on} Jaccard"
        rows = []
        for name, ingredient_config in zip(ingredients, configs, strict=True):
            row = {"ingredient": f"`{name}`"}
            row.update((f, ingredient_config[f]) for f in differing if f in ingredient_config)
            if scores.get(name) is not None:
                row[score_column] = f"{scores[name]:.4f}"
            rows.append(row)
        yield ""
        yield "The ingredients (— : not recorded by that run):"
        yield ""
        columns = ("ingredient", *differing) + ((score_column,) if scores else ())
        yield from _table(columns, rows)


def _score_lines(metrics, extra):
    splits = metrics.get("splits", {})
    rows = [
        {
            "data": f"PH² {split}",
            "signature": export.SIGNATURE,
            **({"images": result["num_images"]} if "num_images" in result else {}),
            **result.get("metrics", {}),
            "source": f"`{publish.METRICS_FILE}`",
        }
        for split, result in splits.items()
    ]
    rows += [{**row, "source": f"`{row['source']}`"} for row in extra["scores"]]
    if not rows:
        return []
    metric_names = [
        key
        for key in dict.fromkeys(k for row in rows for k in row)
        if key not in ("data", "signature", "images", "source")
    ]
    formatted = [
        {k: f"{v:.4f}" if k in metric_names and isinstance(v, float) else v for k, v in row.items()}
        for row in rows
    ]
    yield (
        "Mean per-image scores at the images' original size (definitions: "
        "`ph2_tf/evaluation/metrics.py`)."
    )
    if metrics.get("measured"):
        yield f"`{publish.METRICS_FILE}` measured them through the {metrics['measured']}."
    yield ""
    yield from _table(("data", "signature", "images", *metric_names, "source"), formatted)
    provenance = _provenance(metrics.get("provenance", {}))
    if provenance:
        yield ""
        yield f"`{publish.METRICS_FILE}`'s rows were measured with {provenance}."


def _provenance(provenance):
    """`provenance.collect()`'s record as one phrase, only what it holds."""
    git = provenance.get("git") or {}
    packages = provenance.get("packages") or {}
    parts = []
    if git.get("commit"):
        state = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
        parts.append(f"the code of commit {git['commit']}{state}")
    parts += [f"{name} {packages[name]}" for name in ("tensorflow", "keras") if packages.get(name)]
    if provenance.get("python"):
        parts.append(f"Python {provenance['python']}")
    if provenance.get("backend"):
        parts.append(f"the {provenance['backend']} backend")
    if provenance.get("precision"):
        parts.append(f"{provenance['precision']} precision")
    if provenance.get("onednn") is not None:
        parts.append("oneDNN " + ("on" if provenance["onednn"] else "off"))
    if provenance.get("device"):
        parts.append(f"on {provenance['device']}")
    return ", ".join(parts)


def _latency_lines(extra):
    if not extra["latency"]:
        return []
    rows = [{**row, "source": f"`{row['source']}`"} for row in extra["latency"]]
    return ["One image per call, after warm-up calls.", "", *_table(_LATENCY_COLUMNS, rows)]


def _signature_lines(version_dir, source):
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        saved_model = saved_model_pb2.SavedModel.FromString(
            (version_dir / "saved_model.pb").read_bytes()
        )
    except DecodeError as error:
        raise ValueError(f"{str(version_dir / 'saved_model.pb')!r} is damaged: {error}") from None

    def tensors(specs):
        return ", ".join(
            f"`{name}` {tf.dtypes.as_dtype(spec.dtype).name} "
            f"[{', '.join('None' if d.size < 0 else str(d.size) for d in spec.tensor_shape.dim)}]"
            for name, spec in sorted(specs.items())
        )

    signatures = saved_model.meta_graphs[0].signature_def
    names = sorted(
        (n for n in signatures if not n.startswith("__")), key=lambda n: (n != export.SIGNATURE, n)
    )
    serving = source.get("serving", {})
    purposes = {
        **SIGNATURE_PURPOSES,
        export.SIGNATURE: FLIP_AVERAGE if serving.get("flip_tta") else ONE_PASS,
    }
    pixel_signatures = (export.SIGNATURE, export.SINGLE_PASS_SIGNATURE, export.FLIP_TTA_SIGNATURE)
    for name in names:
        purpose = f": {purposes[name]}" if name in purposes else ""
        if serving.get("refine") is not None and name in pixel_signatures:
            purpose += ", then the same on the window around the lesion it finds (refinement)"
        inputs, outputs = tensors(signatures[name].inputs), tensors(signatures[name].outputs)
        yield f"- `{name}`{purpose}. In: {inputs}. Out: {outputs}."
    if names:
        yield (
            "- `None` is any size: a batch of images of any height and width; `probabilities` and "
            "`mask` come at the input's size."
        )


def _limit_lines(source, config):
    extra = _extra_training(source, config)
    if extra is None:
        yield (
            "- Trained on PH² only: 200 dermoscopic images from one clinic (Hospital Pedro "
            "Hispano, Matosinhos, Portugal). Images from other clinics and devices may score lower."
        )
    else:
        yield (
            f"- Trained on PH² (one clinic) and `{extra[0]}`: clinics and devices seen in neither "
            "may score lower."
        )
    yield "- Dermoscopy only: one lesion in a dermoscopic image; other photographs were never seen."
    if "image_size" in config:
        size = config["image_size"]
        yield f"- Images are resized to {size}×{size} without keeping their aspect ratio."
        if source.get("serving", {}).get("refine") is not None:
            yield (
                "- A lesion is seen at higher resolution only when the first pass finds it: one "
                "it misses at the first size stays missed."
            )
    serving = source.get("serving", {})
    if serving.get("largest_component") and serving.get("component_rule") == "most_confident":
        yield (
            "- Only the lesion the model is surest of is kept: of two lesions the other is "
            "dropped, and a false region (a sticker, ink) marked more surely than the lesion is "
            "kept instead of it."
        )
    elif serving.get("largest_component"):
        yield (
            "- Only the largest lesion is kept: of two lesions the smaller is dropped, and a "
            "larger false region (a sticker, ink) is kept instead of the lesion."
        )
    yield "- Not a medical device: not for diagnosis, triage or any clinical decision."
