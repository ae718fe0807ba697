"""Publishing a tuner run's best UNet and SegNet to TF Serving's model root.

Which seed is best is `ph2_tf.serving.publish.best_per_model`'s choice (validation split only);
whether it becomes a new served version is `ph2_tf.serving.publish.publish`'s (it must beat the
served version through the serving signature by the noise rule, on PH2 validation or on the
selection folders given, unless forced).
"""

import keras

from ph2_tf.experiments import records
from ph2_tf.serving import publish


def publish_best(
    settings: records.SearchSettings, run_records, base_dir, force=False, selection_dirs=()
):
    """Publishes each architecture's best seed to `base_dir` as `ph2_<model>`.

    Args:
        settings: the run's `SearchSettings`.
        run_records: the run's records (`records.load_records`).
        base_dir: TF Serving model root.
        force: publish even when not better than the served version.
        selection_dirs: ISIC-layout folders to choose on beside PH2 validation, the first the
            selection signal (`ph2_tf.serving.publish.publish`).

    Returns:
        `{model name: new version directory or None}`; empty off TensorFlow, where nothing can
        be exported.
    """
    published = {}
    if keras.backend.backend() != "tensorflow":
        print(
            "not published: exporting to TF Serving needs TensorFlow; on a machine with it, run "
            "`ph2-seg export --run-dir` on the chosen seed's directory",
            flush=True,
        )
        return published
    for model_name, record in publish.best_per_model(run_records).items():
        source = {
            "name": record["name"],
            "configuration": record["configuration"],
            "seed": record["seed"],
            "profile": record["profile"],
            "source_run": str(settings.run_dir),
            "record_validation": record["validation"],
        }
        published[model_name] = publish.publish(
            records.load_seed_model(settings, record),
            base_dir=base_dir,
            model_name=f"ph2_{model_name}",
            image_size=settings.profile.image_size,
            source=source,
            force=force,
            selection_dirs=selection_dirs,
            data_dir=settings.data_dir,
            manual_dir=settings.manual_dir,
        )
    return published
