"""Choosing and publishing models to TF Serving's `saved_models/` without replacing a better one.

TF Serving (and `python -m ph2_tf predict`) serve a model's highest version, so a new version
is published only when, measured through its own serving signature on the validation split,
it beats the version being served, or when the caller insists (`force=True`). Each published
version gets a `metrics.json` measured the same way, on the validation and test splits.
"""

import json
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ph2_tf import provenance
from ph2_tf.evaluation import evaluate
from ph2_tf.serving import versions

METRICS_FILE = "metrics.json"
SELECTION_SPLIT = "validation"
SELECTION_METRIC = "jaccard"


def best_per_model(records):
    """The record to publish for each architecture.

    The configuration with the best mean validation Jaccard over its seeds, a diverged seed
    counting as 0 (as in the tuner's objective), then its finished seed with the best
    validation Jaccard.

    Args:
        records: per-seed records (`ph2_tf.experiments.records.load_records`).

    Returns:
        `{model name: record}`; an architecture whose every seed diverged is left out.
    """

    def jaccard(record):
        return record["validation"]["jaccard"] if record.get("validation") else 0.0

    best = {}
    finished = [r for r in records if r.get("validation")]
    for model_name in sorted({r["configuration"]["model"] for r in finished}):
        names = sorted({r["name"] for r in finished if r["configuration"]["model"] == model_name})

        def mean_val_jaccard(name):
            return float(np.mean([jaccard(r) for r in records if r["name"] == name]))

        best_name = max(names, key=mean_val_jaccard)
        candidates = [r for r in finished if r["name"] == best_name]
        best[model_name] = max(candidates, key=jaccard)
    return best


def _signature(version_dir):
    import tensorflow as tf  # exported models run on TensorFlow; the rest of this module not

    from ph2_tf.serving import export

    return tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE]


def measure(version_dir, splits=(SELECTION_SPLIT, "test"), *, data_dir=None, manual_dir=None):
    """Metrics of an exported SavedModel through its serving signature, at original size.

    Args:
        version_dir: a SavedModel directory.
        splits: TFDS splits to measure.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.

    Returns:
        `{split: evaluate.evaluate_serving(...) result}`.
    """
    serve = _signature(version_dir)
    return {
        split: evaluate.evaluate_serving(serve, split, data_dir=data_dir, manual_dir=manual_dir)
        for split in splits
    }


def selection_score(version_dir, *, data_dir=None, manual_dir=None):
    """What choosing between models compares: validation Jaccard through the signature.

    Args:
        version_dir: a SavedModel directory.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.

    Returns:
        The mean per-image Jaccard on the validation split, at original size.
    """
    result = measure(version_dir, [SELECTION_SPLIT], data_dir=data_dir, manual_dir=manual_dir)
    return result[SELECTION_SPLIT]["metrics"][SELECTION_METRIC]


def candidate_score(model, image_size, *, threshold=0.5, data_dir=None, manual_dir=None):
    """`selection_score` of a Keras model, exported to a scratch directory for the purpose.

    Args:
        model: the Keras model (float32 images in [0, 1] -> logits).
        image_size: the model's training size.
        threshold: probability at or above which the signature's `mask` is 1.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.

    Returns:
        The validation Jaccard the model would be published with.
    """
    from ph2_tf.serving import export  # imports TensorFlow

    with tempfile.TemporaryDirectory() as scratch:
        version_dir = Path(scratch) / "candidate"
        export.write_saved_model(model, version_dir, image_size, threshold)
        return selection_score(version_dir, data_dir=data_dir, manual_dir=manual_dir)


def write_metrics(version_dir, source, *, data_dir=None, manual_dir=None):
    """Measures a SavedModel on the validation and test splits and writes its `metrics.json`.

    Args:
        version_dir: a SavedModel version directory.
        source: JSON-serialisable description of where the model comes from (run, record).
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.

    Returns:
        The dict written.
    """
    summary = {
        "source": source,
        "measured": "serving_default signature, uint8 images at original size, mask output",
        "splits": measure(version_dir, data_dir=data_dir, manual_dir=manual_dir),
        "provenance": provenance.collect(),
    }
    (Path(version_dir) / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def serving_options(version_dir):
    """What a published version's graph does after the model, as its `metrics.json` records it.

    Args:
        version_dir: a published SavedModel version directory.

    Returns:
        `{"threshold": float, "largest_component": bool}` as exported, or `{}` for a version
        published before this was recorded (its graph only thresholds).
    """
    metrics_path = Path(version_dir) / METRICS_FILE
    if not metrics_path.exists():
        return {}
    source = json.loads(metrics_path.read_text()).get("source")
    return source.get("serving", {}) if isinstance(source, dict) else {}


def load_published_model(version_dir):
    """Rebuilds the Keras model of a published version from its SavedModel and `metrics.json`.

    The architecture comes from the training config that `metrics.json` records as `source`,
    the weights from the SavedModel's variables, matched by name. A version exported with its
    BatchNorm folded into the convolutions (`ph2_tf.serving.folding`) is rebuilt folded. This lets a
    published model be exported again with a newer serving graph, without its training run.

    Args:
        version_dir: a published SavedModel version directory.

    Returns:
        `(model, source)`: the model (float32 images in [0, 1] -> logits) and the recorded
        source, whose `config` gives the training size.

    Raises:
        ValueError: no `metrics.json` with a training config, or weights that do not match it.
    """
    import tensorflow as tf  # reads a SavedModel

    from ph2_tf.serving import export, folding
    from ph2_tf.training import train

    version_dir = Path(version_dir)
    metrics_path = version_dir / METRICS_FILE
    source = json.loads(metrics_path.read_text()).get("source") if metrics_path.exists() else None
    if not isinstance(source, dict) or not isinstance(source.get("config"), dict):
        raise ValueError(
            f"{str(metrics_path)!r} does not record the training config (source.config) that "
            "the model was built from"
        )
    # The config's paths (data, init_from) may be long gone; only the architecture is needed.
    model = train.build_configured_model(SimpleNamespace(**source["config"]))
    loaded = tf.saved_model.load(str(version_dir))  # owns the variables: keep it referenced
    saved = {
        variable.name.removesuffix(":0"): variable.numpy()
        for variable in loaded.signatures[export.SIGNATURE].variables
    }
    for candidate in (model, folding.fold_batch_normalization(model)):
        if sorted(saved) == sorted(weight.path for weight in candidate.weights):
            for weight in candidate.weights:
                weight.assign(saved[weight.path])
            return candidate, source
    missing = sorted({weight.path for weight in model.weights} - set(saved))
    raise ValueError(
        f"the variables of {str(version_dir)!r} do not match a {source['config'].get('model')} "
        f"built from its metrics.json: {len(saved)} saved against {len(model.weights)} weights"
        + (f", first missing: {missing[0]}" if missing else "")
    )


def publish(
    model,
    *,
    base_dir,
    model_name,
    image_size,
    source,
    threshold=0.5,
    largest_component=False,
    force=False,
    data_dir=None,
    manual_dir=None,
    log=print,
):
    """Exports `model` as the next version of `model_name` if it beats the served version.

    The candidate is exported to a staging directory (TF Serving ignores non-numeric names) and
    measured through its signature on the validation split; the served (highest) version is
    measured the same way. Only a strictly better candidate, or any with `force`, is renamed
    to the next version number, measured into its `metrics.json`, and the model's card
    (`ph2_tf.serving.cards`) rewritten; otherwise the staging directory is removed. Either way
    `log` is told what happened and why.

    Args:
        model: the Keras model (float32 images in [0, 1] -> logits).
        base_dir: TF Serving model root (`saved_models`).
        model_name: TF Serving model name (`ph2_unet`).
        image_size: the model's training size.
        source: JSON-serialisable description of the model's origin, kept in `metrics.json`.
        threshold: probability at or above which the signatures' `mask` is 1.
        largest_component: the signatures' `mask` keeps only the largest lesion, holes filled.
        force: publish even if not better than the served version.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.
        log: function receiving one line of text per decision.

    Returns:
        The new version directory, or None when nothing was published.
    """
    from ph2_tf.serving import cards, export  # imports TensorFlow

    model_dir = Path(base_dir) / model_name
    staging = model_dir / ".candidate"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted earlier call
    staging.parent.mkdir(parents=True, exist_ok=True)
    export.write_saved_model(model, staging, image_size, threshold, largest_component)
    common = dict(data_dir=data_dir, manual_dir=manual_dir)
    try:
        score = selection_score(staging, **common)
        served = versions.served_versions(model_dir)
        name = source.get("name", "candidate")
        what = f"{model_name}: {name} ({SELECTION_SPLIT} Jaccard {score:.4f})"
        if served:
            current_score = selection_score(served[-1], **common)
            if score <= current_score and not force:
                log(
                    f"{what} is not better than served version {served[-1].name} "
                    f"({current_score:.4f}); not published (publish anyway with "
                    "--force-export)"
                )
                return None
            reason = f"served version {served[-1].name} has {current_score:.4f}"
            reason += ", published because forced" if score <= current_score else ""
        else:
            reason = "no version served yet"
        path = model_dir / str(versions.next_version(model_dir))
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_metrics(path, source, **common)
    # TF Serving's Docker image conventionally sees the model root mounted at /models.
    export.write_models_config(base_dir, serving_root="/models")
    cards.write_card(model_dir)
    log(f"{what}: published as {path} ({reason})")
    return path
