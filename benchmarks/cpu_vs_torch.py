"""Training images/s on this CPU: our Keras models against the same architectures in PyTorch.

Both sides train the `small` profile's shape (96×96 inputs, an eighth of the filters, batch 12)
with AdamW (lr 1e-4, weight decay 0.01) and BCE on the same random batch, one step per call
(`train_on_batch` here, `zero_grad/forward/backward/step` there), timed after warm-up steps, in
one process, alternating rounds so that both see the same machine load. Our side is the model
exactly as `ph2_tf.training.train` compiles and runs it: the six segmentation metrics on every
step, op determinism on, and XLA as `TrainConfig.jit_compile` resolves it. Parameter counts are
checked equal, so both train the same network. PyTorch is a benchmark dependency only
(`pip install ".[benchmark]"`).

    python benchmarks/cpu_vs_torch.py
    python benchmarks/cpu_vs_torch.py --models unet --rounds 5
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/cpu_vs_torch.py   # TensorFlow's Eigen kernels

`--jit-compile true` compiles our step with XLA, which needs op determinism off on TensorFlow.
"""

import argparse
import os
import time

import numpy as np

import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow (keras imports it), as the command line does.
from ph2_tf.models import segnet, unet  # noqa: E402
from ph2_tf.models.blocks import scaled  # noqa: E402
from ph2_tf.training.profiles import PROFILES  # noqa: E402


def torch_unet(width):
    """The study's UNet in PyTorch, with our filter counts (`ph2_tf.models.unet.FILTERS`)."""
    import torch
    from torch import nn

    filters = [scaled(f, width) for f in unet.FILTERS]

    def double_conv(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            ins = [3, *filters[:-1]]
            self.encoders = nn.ModuleList(
                double_conv(i, o) for i, o in zip(ins, filters, strict=True)
            )
            levels = range(len(filters) - 2, -1, -1)
            self.ups = nn.ModuleList(
                nn.ConvTranspose2d(filters[k + 1], filters[k], 2, stride=2) for k in levels
            )
            self.decoders = nn.ModuleList(double_conv(2 * filters[k], filters[k]) for k in levels)
            self.head = nn.Conv2d(filters[0], 1, 3, padding=1)

        def forward(self, x):
            skips = []
            for encoder in self.encoders[:-1]:
                x = encoder(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.encoders[-1](x)
            for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
                x = decoder(torch.cat([skip, up(x)], 1))
            return self.head(x)

    return UNet()


def torch_segnet(width):
    """The study's SegNet (logit head) in PyTorch, with scaled filter counts."""
    from torch import nn

    encoder = [[scaled(f, width) for f in block] for block in segnet.ENCODER]
    decoder = [[scaled(f, width) for f in block] for block in segnet.DECODER]

    def stack(cin, counts):
        layers = []
        for count in counts:
            layers += [nn.Conv2d(cin, count, 3, padding=1), nn.BatchNorm2d(count), nn.ReLU()]
            cin = count
        return nn.Sequential(*layers)

    class SegNet(nn.Module):
        def __init__(self):
            super().__init__()
            ins = [3] + [block[-1] for block in encoder[:-1]]
            self.encoders = nn.ModuleList(stack(i, b) for i, b in zip(ins, encoder, strict=True))
            ins = [encoder[-1][-1]] + [block[-1] for block in decoder[:-1]]
            self.decoders = nn.ModuleList(stack(i, b) for i, b in zip(ins, decoder, strict=True))
            self.head = nn.Conv2d(decoder[-1][-1], 1, 3, padding=1)

        def forward(self, x):
            indices = []
            for encoder in self.encoders:
                x, index = nn.functional.max_pool2d(encoder(x), 2, return_indices=True)
                indices.append(index)
            for decoder, index in zip(self.decoders, reversed(indices), strict=True):
                x = decoder(nn.functional.max_unpool2d(x, index, 2))
            return self.head(x)

    return SegNet()


def keras_step(model_name, profile, jit_compile):
    """A `train_on_batch` closure of our model as `ph2_tf.training.train` builds it.

    Args:
        model_name: `'unet'` or `'segnet'`.
        profile: a `ph2_tf.training.profiles.Profile`.
        jit_compile: `TrainConfig.jit_compile` (None: Keras' auto); True turns op determinism off.

    Returns:
        `(step, trainable parameter count, whether Keras compiles the step with XLA)`.
    """
    from ph2_tf.training import train
    from ph2_tf.training.config import TrainConfig

    cfg = TrainConfig.from_profile(
        profile,
        model=model_name,
        loss="bce",
        learning_rate=1e-4,
        deterministic=jit_compile is not True,
        jit_compile=jit_compile,
    )
    train.set_seeds(0, cfg.deterministic)
    model = train.build_and_compile(cfg)
    images, masks = random_batch(profile)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return (lambda: model.train_on_batch(images, masks)), trainable, model.jit_compile


def torch_step(model_name, profile):
    """One PyTorch training step as a closure, and the model's parameter count."""
    import torch

    torch.manual_seed(0)
    model = {"unet": torch_unet, "segnet": torch_segnet}[model_name](profile.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    images, masks = (
        torch.from_numpy(a.transpose(0, 3, 1, 2).copy()) for a in random_batch(profile)
    )
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), masks)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, sum(p.numel() for p in model.parameters())


def random_batch(profile):
    rng = np.random.default_rng(0)
    shape = (profile.batch_size, profile.image_size, profile.image_size)
    images = rng.random((*shape, 3), dtype="float32")
    masks = (rng.random((*shape, 1)) < 0.32).astype("float32")
    return images, masks


def images_per_second(step, batch_size, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["unet", "segnet"])
    parser.add_argument("--profile", default="small", choices=sorted(PROFILES))
    parser.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default="auto",
        help="TrainConfig.jit_compile (auto: Keras' choice, as training makes it)",
    )
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    args = parser.parse_args()

    import keras
    import torch

    from ph2_tf import provenance

    profile = PROFILES[args.profile]
    print(
        f"profile {args.profile} ({profile}), {os.cpu_count()} CPUs, Keras {keras.__version__} "
        f"({keras.backend.backend()}, oneDNN {provenance.onednn_enabled()}), PyTorch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), jit_compile: {args.jit_compile}"
    )
    print("| model | XLA | ours (images/s) | PyTorch (images/s) | ratio |")
    print("|---|---|---|---|---|")
    for model_name in args.models:
        jit_compile = {"auto": None, "true": True, "false": False}[args.jit_compile]
        ours, ours_params, xla = keras_step(model_name, profile, jit_compile)
        theirs, their_params = torch_step(model_name, profile)
        if ours_params != their_params:
            raise SystemExit(
                f"{model_name}: {ours_params} parameters here, {their_params} in torch"
            )
        for step in (ours, theirs):
            for _ in range(args.warmup_steps):
                step()
        rates = {"ours": [], "torch": []}
        for _ in range(args.rounds):
            rates["ours"].append(images_per_second(ours, profile.batch_size, args.steps))
            rates["torch"].append(images_per_second(theirs, profile.batch_size, args.steps))
        best_ours, best_torch = max(rates["ours"]), max(rates["torch"])
        print(
            f"| {model_name} ({ours_params:,} parameters) | {'on' if xla else 'off'} "
            f"| {best_ours:.1f} | {best_torch:.1f} "
            f"| {best_ours / best_torch:.2f}× |"
        )


if __name__ == "__main__":
    main()
