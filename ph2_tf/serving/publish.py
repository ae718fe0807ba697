"""Choosing and publishing models to TF Serving's `saved_models/` without replacing a better one.

TF Serving (and `ph2-seg predict`) serve a model's highest version, so a new version is
published only when it beats the version being served by more than noise, or when the caller
insists (`force=True`). Both are scored image by image through their own serving signature at
original size, on PH2 validation and, when selection folders are given (such as ISIC-select,
images from other clinics, or a stress set), on those too; `selection.decide` then applies the
rule: the paired gain on the selection signal (the first folder, else PH2 validation) must exceed
twice its standard error, and PH2 validation and the other folders may lose no more than noise.
The decision and its numbers are recorded in the version's `metrics.json`
(`source.publishing`). Each published version gets a `metrics.json` measured on the validation
and test splits.

A version is assembled whole (SavedModel and `metrics.json`) in the model's staging folder and
renamed to its number in one step (`ph2_tf.serving.versions`); `models.config` and the model's
card are then rewritten atomically. Killed at any point, publishing leaves the served version
as it was, or the new version complete; a rerun removes the stray staging folder and rewrites
`models.config` and the card, published or not.
"""

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ph2_tf import files, provenance
from ph2_tf.data import external
from ph2_tf.evaluation import evaluate, scoring
from ph2_tf.serving import selection, versions

METRICS_FILE = "metrics.json"
SELECTION_SPLIT = "validation"
SELECTION_METRIC = "jaccard"
MEASURED_SPLITS = (SELECTION_SPLIT, "test")


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
    from ph2_tf.serving import export  # exported models run on TensorFlow; the rest of this not

    return export.load_saved_model(version_dir).signatures[export.SIGNATURE]


def measure(version_dir, splits=MEASURED_SPLITS, *, data_dir=None, manual_dir=None):
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


def selection_sets(*, data_dir=None, manual_dir=None, selection_dirs=()):
    """The image sets a publishing choice is scored on.

    Args:
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.
        selection_dirs: ISIC-layout folders (`images/`, `masks/`) kept for choosing, such as
            `../shared/external/isic2017-select` or a stress set written by
            `python -m ph2_tf.experiments.stress_sets`; the first is the selection signal.

    Returns:
        `{"ph2_validation": cases}`, then `{<folder name>: cases}` for each of `selection_dirs`.

    Raises:
        ValueError: a folder holds no images, or two folders have the same name.
    """
    names = ["ph2_validation"]
    for selection_dir in selection_dirs:  # before any image is read
        name = Path(selection_dir).name
        if name in names:
            raise ValueError(f"selection set {selection_dir}: a set named {name!r} is already in")
        names.append(name)
    common = dict(data_dir=data_dir, manual_dir=manual_dir)
    sets = {"ph2_validation": external.ph2_cases(SELECTION_SPLIT, **common)}
    for name, selection_dir in zip(names[1:], selection_dirs, strict=True):
        sets[name] = external.folder_cases(selection_dir)
        if not sets[name]:
            raise ValueError(f"selection set {selection_dir}: no images with their masks")
    return sets


def per_image_jaccard(version_dir, sets):
    """`{set name: {image id: Jaccard}}` of a SavedModel's `mask` through its signature."""
    predict = scoring.signature_predictor(_signature(version_dir), "mask")
    jaccards = {}
    for name, cases in sets.items():
        scores = scoring.score_at_original_size(predict, cases)
        jaccards[name] = dict(zip(scores.image_ids, scores.per_image["jaccard"], strict=True))
    return jaccards


def publishing_decision(candidate, served):
    """`selection.decide` on per-image Jaccards from `per_image_jaccard` of the same sets.

    The selection signal is the first selection folder when there is one, else PH2 validation;
    PH2 validation and any further folder are guards, which must lose no more than noise.

    Returns:
        `(decision, record)`: the `selection.Decision`, and what `metrics.json` keeps of it.
    """
    gains = {name: selection.paired_gain(candidate[name], served[name]) for name in candidate}
    folders = [name for name in gains if name != "ph2_validation"]
    signal = folders[0] if folders else "ph2_validation"
    guards = folders[1:]
    decision = selection.decide(
        gains[signal], gains["ph2_validation"], guards={name: gains[name] for name in guards}
    )
    bar = f"{selection.NOISE_MULTIPLE:g} x its standard error"
    record = {
        "selection_signal": signal,
        "rule": f"paired per-image Jaccard gain over the served version > {bar} on {signal}, "
        f"and gain >= -{bar} on " + ", ".join(["PH2 validation", *guards]),
        "gains": {
            name: {"gain": g.gain, "standard_error": g.standard_error, "images": g.images}
            for name, g in gains.items()
        },
        "decision": decision.reason,
    }
    return decision, record


def candidate_score(
    model,
    image_size,
    *,
    data_dir=None,
    manual_dir=None,
    cases=None,
    **serving,
):
    """`selection_score` of a Keras model, exported to a scratch directory for the purpose.

    Args:
        model: the Keras model (float32 images in [0, 1] -> logits).
        image_size: the model's training size.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.
        cases: None, or the `external.Case`s of a selection folder to score on instead of PH2
            validation (`external.folder_cases`).
        serving: the serving options, keyword arguments of `export.write_saved_model`
            (`threshold`, `largest_component`, `refine`, `component_rule`, `flip_tta`), as
            `metrics.json` records them in `source.serving`.

    Returns:
        The mean per-image Jaccard through the signature at original size: on PH2 validation,
        the number the model would be published with, or on `cases`.
    """
    from ph2_tf.serving import export  # imports TensorFlow

    with tempfile.TemporaryDirectory() as scratch:
        version_dir = Path(scratch) / "candidate"
        export.write_saved_model(model, version_dir, image_size, **serving)
        if cases is None:
            return selection_score(version_dir, data_dir=data_dir, manual_dir=manual_dir)
        predict = scoring.signature_predictor(_signature(version_dir), "mask")
        return scoring.score_at_original_size(predict, cases).mean[SELECTION_METRIC]


def metrics_summary(version_dir, source, *, measured=None, data_dir=None, manual_dir=None):
    """A SavedModel's `metrics.json` contents, measured on the validation and test splits.

    Args:
        version_dir: a SavedModel directory.
        source: JSON-serialisable description of where the model comes from (run, record).
        measured: `measure`'s result for splits already measured, which are not measured again.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.

    Returns:
        The dict `write_metrics` writes.
    """
    splits = dict(measured or {})
    missing = [split for split in MEASURED_SPLITS if split not in splits]
    if missing:
        splits.update(measure(version_dir, missing, data_dir=data_dir, manual_dir=manual_dir))
    return {
        "source": source,
        "measured": "serving_default signature, uint8 images at original size, mask output",
        "splits": {split: splits[split] for split in MEASURED_SPLITS},
        "provenance": provenance.collect(),
    }


def write_metrics(version_dir, source, *, measured=None, data_dir=None, manual_dir=None):
    """Measures a SavedModel on the validation and test splits and writes its `metrics.json`,
    atomically.

    Args:
        version_dir: a SavedModel version directory.
        source: JSON-serialisable description of where the model comes from (run, record).
        measured: `measure`'s result for splits already measured, which are not measured again.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.

    Returns:
        The dict written.
    """
    summary = metrics_summary(
        version_dir, source, measured=measured, data_dir=data_dir, manual_dir=manual_dir
    )
    files.write_json(Path(version_dir) / METRICS_FILE, summary)
    return summary


def write_served_files(base_dir, model_name, serving_root=versions.DOCKER_SERVING_ROOT):
    """Rewrites `<base_dir>/models.config` and the card of `model_name`'s highest version.

    Args:
        base_dir: TF Serving model root.
        model_name: the model whose card is rewritten.
        serving_root: `base_dir` as the server sees it (`export.write_models_config`).

    Returns:
        The path of `models.config`.
    """
    from ph2_tf.serving import cards, export  # imports TensorFlow

    config = export.write_models_config(base_dir, serving_root=serving_root)
    cards.write_card(Path(base_dir) / model_name)
    return config


def serving_options(version_dir):
    """What a published version's graph does after the model, as its `metrics.json` records it.

    Args:
        version_dir: a published SavedModel version directory.

    Returns:
        `{"threshold": float, "largest_component": bool, "refine": float or None}` as
        exported, with `"component_rule"` when it is not the largest and `"flip_tta": true`
        when the default signature averages flips (no "refine" for a version
        exported before refinement existed), or `{}` for a
        version published before this was recorded (its graph only thresholds).
    """
    source = read_metrics(version_dir).get("source")
    return source.get("serving", {}) if isinstance(source, dict) else {}


def read_metrics(version_dir):
    """A version's `metrics.json`, or `{}` for a version without one.

    Raises:
        ValueError: a `metrics.json` that is not a JSON object; the message names it.
    """
    path = Path(version_dir) / METRICS_FILE
    if not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{str(path)!r} does not hold a JSON object")
    return metrics


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
    from ph2_tf.serving import export, folding  # reads a SavedModel: TensorFlow
    from ph2_tf.training import train

    version_dir = Path(version_dir)
    metrics_path = version_dir / METRICS_FILE
    source = read_metrics(version_dir).get("source")
    if not isinstance(source, dict) or not isinstance(source.get("config"), dict):
        raise ValueError(
            f"{str(metrics_path)!r} does not record the training config (source.config) that "
            "the model was built from"
        )
    # The config's paths (data, init_from) may be long gone; only the architecture is needed.
    try:
        model = train.build_configured_model(SimpleNamespace(**source["config"]))
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # a field missing or bad
        raise ValueError(
            f"{str(metrics_path)!r}: its training config (source.config) builds no model: {error}"
        ) from None
    loaded = export.load_saved_model(version_dir)  # owns the variables: keep it referenced
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
    force=False,
    serving_root=versions.DOCKER_SERVING_ROOT,
    data_dir=None,
    manual_dir=None,
    selection_dirs=(),
    log=print,
    **serving,
):
    """Exports `model` as the next version of `model_name` if it beats the served version.

    The candidate is exported to the model's staging folder (`versions.staging`) and scored
    image by image through its signature on `selection_sets`; the served (highest) version is
    scored the same way, and `publishing_decision` applies the noise rule. A candidate that
    passes it, or any with `force`, is measured on the test split too, given its `metrics.json`
    (with the decision's numbers) and renamed to the next version number; otherwise it is
    removed. Either way `models.config` and the model's card (`ph2_tf.serving.cards`) are
    rewritten, which repairs them after an interrupted earlier call, and `log` is told what
    happened and why.

    Args:
        model: the Keras model (float32 images in [0, 1] -> logits).
        base_dir: TF Serving model root (`saved_models`).
        model_name: TF Serving model name (`ph2_unet`).
        image_size: the model's training size.
        source: JSON-serialisable description of the model's origin, kept in `metrics.json`.
        force: publish even if not better than the served version.
        serving_root: `base_dir` as the server sees it, written into `models.config`.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.
        selection_dirs: ISIC-layout folders to choose on beside PH2 validation, the first the
            selection signal, the others guards (`selection_sets`).
        log: function receiving one line of text per decision.
        serving: the serving options, keyword arguments of `export.write_saved_model`
            (`threshold`, `largest_component`, `refine`, `component_rule`, `flip_tta`), as
            `metrics.json` records them in `source.serving`.

    Returns:
        The new version directory, or None when nothing was published.

    Raises:
        ValueError: non-finite weights, a threshold not strictly between 0 and 1, or an empty
            `selection_dirs` folder, or two with the same name.
        versions.PublishingError: another process is publishing a version of this model.
    """
    from ph2_tf.serving import export  # imports TensorFlow

    export.check_finite(model)
    model_dir = Path(base_dir) / model_name
    common = dict(data_dir=data_dir, manual_dir=manual_dir)
    sets = selection_sets(**common, selection_dirs=selection_dirs)
    with versions.staging(model_dir) as staged:
        export.write_saved_model(model, staged, image_size, **serving)
        candidate = per_image_jaccard(staged, sets)
        served = versions.served_versions(model_dir)
        what = f"{model_name}: {source.get('name', 'candidate')}"
        reason = "no version served yet"
        if served:
            decision, record = publishing_decision(candidate, per_image_jaccard(served[-1], sets))
            reason = (
                f"against served version {served[-1].name}, chosen on "
                f"{record['selection_signal']}: {decision.reason}"
            )
            if not decision.publish and not force:
                write_served_files(base_dir, model_name, serving_root)
                # Every set's gain, not only the failing one: a refusal is a result too.
                gains = ", ".join(
                    f"{name} {g['gain']:+.4f} ± {g['standard_error']:.4f}"
                    for name, g in record["gains"].items()
                )
                log(
                    f"{what} not published ({reason}; gains {gains}; publish anyway with "
                    "--force-export)"
                )
                return None
            if not decision.publish:
                reason += ", published because forced"
                record = {**record, "forced": True}
            source = {**source, "publishing": record}
        write_metrics(staged, source, **common)
        path = versions.promote(staged)
        write_served_files(base_dir, model_name, serving_root)
    log(f"{what}: published as {path} ({reason})")
    return path


def export_measured(
    model,
    *,
    base_dir,
    model_name,
    image_size,
    source,
    version=None,
    serving_root=versions.DOCKER_SERVING_ROOT,
    data_dir=None,
    manual_dir=None,
    **serving,
):
    """Exports `model` as a version with its `metrics.json`, whatever the served version scores.

    Assembled in the staging folder like `publish`'s versions, so that no version is ever
    served without its metrics; then `models.config` and the card are rewritten.

    Args:
        model: the Keras model (float32 images in [0, 1] -> logits).
        base_dir: TF Serving model root.
        model_name: TF Serving model name.
        image_size: the model's training size.
        source: JSON-serialisable description of the model's origin, kept in `metrics.json`.
        version: positive int; the next free number when None.
        serving_root: `base_dir` as the server sees it, written into `models.config`.
        data_dir: TFDS data directory.
        manual_dir: PH2 manual directory.
        serving: the serving options, keyword arguments of `export.write_saved_model`
            (`threshold`, `largest_component`, `refine`, `component_rule`, `flip_tta`), as
            `metrics.json` records them in `source.serving`.

    Returns:
        The new version directory.

    Raises:
        ValueError: non-finite weights or a bad threshold.
        versions.PublishingError: `version` not a positive int or taken, or another process
            publishing a version of this model.
    """
    from ph2_tf.serving import export  # imports TensorFlow

    model_dir = Path(base_dir) / model_name
    versions.require_free(model_dir, version)
    export.check_finite(model)
    with versions.staging(model_dir) as staged:
        export.write_saved_model(model, staged, image_size, **serving)
        write_metrics(staged, source, data_dir=data_dir, manual_dir=manual_dir)
        path = versions.promote(staged, version)
        write_served_files(base_dir, model_name, serving_root)
    return path
