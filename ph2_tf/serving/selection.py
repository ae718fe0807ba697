"""The noise-aware publishing rule: publish a candidate only if its gain is larger than noise.

A candidate model (or post-processing, or checkpoint) and the served version are scored on the
same images. What decides is the paired gain, the mean over images of (candidate - served), and
its standard error, the sample standard deviation (ddof 1) of those differences divided by the
square root of the image count: pairing removes the images' own difficulty, which both share.

The rule (`decide`), with `NOISE_MULTIPLE` = 2:

- the gain on the selection set (the signal the choice is for, such as ISIC-select through the
  serving signature) must be above 2 standard errors: `gain > 2 * SE`;
- on PH2 validation, the candidate must lose no more than noise: `gain >= -2 * SE` (an equal score,
  gain 0 with SE 0, is no loss);
- so must it on any further set given as a guard: a lever chosen on a set made for it (small
  lesions) must not cost the sets it was not made for (ISIC-select).

Contract for callers (publishing, soups, `export --if-better`): pass per-image scores as mappings
`{image_id: score}`, higher better (per-image Jaccard), of the candidate and of the served version
on exactly the same images; from a `ph2_tf.evaluation.scoring.Scores`, that is
`dict(zip(scores.image_ids, scores.per_image["jaccard"]))`. Mismatched image ids, fewer than two
images or a score that is not a finite number are refused with a `ValueError`, as a comparison on
different images is no comparison. The functions are pure: no files, no models.
"""

import dataclasses
import math

import numpy as np

NOISE_MULTIPLE = 2.0
# Ids named in a mismatch message, at most, per side.
_SHOWN_IDS = 5


@dataclasses.dataclass(frozen=True)
class PairedGain:
    """A candidate's paired gain over the served version on one image set.

    Attributes:
        gain: mean over images of candidate score - served score.
        standard_error: sample standard deviation (ddof 1) of those differences / sqrt(images).
        images: the number of images.
    """

    gain: float
    standard_error: float
    images: int

    def __str__(self):
        return f"{self.gain:+.4f} ± {self.standard_error:.4f} (n={self.images})"


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether to publish a candidate, and why.

    Attributes:
        publish: True when the selection gain is above noise and PH2 validation loses no more
            than noise.
        selection: the `PairedGain` on the selection set.
        validation: the `PairedGain` on PH2 validation.
        reason: one line saying which condition decided.
    """

    publish: bool
    selection: PairedGain
    validation: PairedGain
    reason: str


def _described(ids):
    shown = ", ".join(sorted(ids)[:_SHOWN_IDS])
    return shown + (f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else "")


def _finite(score, name, image_id):
    """`score` as a float; a ValueError naming the image when it is not a finite number."""
    try:
        value = float(score)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"the {name} score of image {image_id} is not a finite number: {score!r}")
    return value


def paired_gain(candidate, served):
    """The paired gain of `candidate` over `served` on the same images, and its standard error.

    Args:
        candidate: `{image_id: score}` of the candidate.
        served: `{image_id: score}` of the served version, on the same image ids.

    Returns:
        A `PairedGain`.

    Raises:
        ValueError: the image ids differ (the message names some of each side's extra ids),
            fewer than two images, or a score that is not a finite number (named).
    """
    only_candidate, only_served = set(candidate) - set(served), set(served) - set(candidate)
    if only_candidate or only_served:
        sides = []
        if only_candidate:
            sides.append(f"only the candidate has {_described(only_candidate)}")
        if only_served:
            sides.append(f"only the served version has {_described(only_served)}")
        raise ValueError(f"the scores are not on the same images: {'; '.join(sides)}")
    if len(candidate) < 2:
        raise ValueError(
            f"a paired gain's standard error needs at least 2 images, received {len(candidate)}"
        )
    image_ids = sorted(candidate)
    candidate_scores = np.array([_finite(candidate[i], "candidate", i) for i in image_ids])
    served_scores = np.array([_finite(served[i], "served", i) for i in image_ids])
    differences = candidate_scores - served_scores
    return PairedGain(
        gain=float(differences.mean()),
        standard_error=float(differences.std(ddof=1) / np.sqrt(len(differences))),
        images=len(differences),
    )


def decide(selection, validation, noise_multiple=NOISE_MULTIPLE, guards=None):
    """The publishing decision from the paired gains on the selection set and PH2 validation.

    Args:
        selection: `PairedGain` on the selection set (`paired_gain`).
        validation: `PairedGain` on PH2 validation.
        noise_multiple: standard errors a gain must clear; 2 unless measuring the rule itself.
        guards: `{set name: PairedGain}` of more sets that, like PH2 validation, must lose no
            more than noise (for a lever chosen on a set made for it, such as small lesions,
            the sets it was not made for).

    Returns:
        A `Decision`: publish only if `selection.gain > noise_multiple * selection.standard_error`,
        `validation.gain >= -noise_multiple * validation.standard_error`, and the same for each
        guard.
    """
    selection_bar = noise_multiple * selection.standard_error
    if not selection.gain > selection_bar:
        reason = (
            f"selection gain {selection.gain:+.4f} is not above {noise_multiple:g} x SE "
            f"({selection_bar:.4f})"
        )
        return Decision(False, selection, validation, reason)
    no_loss = {"PH2 validation": validation, **(guards or {})}
    for name, gain in no_loss.items():
        bar = -noise_multiple * gain.standard_error
        if not gain.gain >= bar:
            reason = (
                f"{name} gain {gain.gain:+.4f} is below -{noise_multiple:g} x SE ({bar:.4f}): "
                "a loss beyond noise"
            )
            return Decision(False, selection, validation, reason)
    reason = f"selection gain {selection.gain:+.4f} > {noise_multiple:g} x SE ({selection_bar:.4f})"
    reason += "".join(
        f" and {name} gain {gain.gain:+.4f} >= {-noise_multiple * gain.standard_error:.4f}"
        for name, gain in no_loss.items()
    )
    return Decision(True, selection, validation, reason)
