"""PyTorch's side of `cpu_vs_torch.py` alone in its process: is it slowed by TensorFlow beside it?

Same models, batch and timing as `benchmarks/cpu_vs_torch.py` (best of 5 rounds of 10 steps),
with no TensorFlow step run in this process.

    python benchmarks/torch_only.py
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import cpu_vs_torch  # noqa: E402  (the sibling script, not a package)

from ph2_tf.training.profiles import PROFILES  # noqa: E402

if __name__ == "__main__":
    profile = PROFILES["small"]
    for name in ("unet", "segnet"):
        step, _ = cpu_vs_torch.torch_step(name, profile)
        for _ in range(3):
            step()
        rates = [cpu_vs_torch.images_per_second(step, profile.batch_size, 10) for _ in range(5)]
        print(f"{name}: PyTorch alone {max(rates):.1f} images/s")
