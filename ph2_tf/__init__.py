"""PH2 skin-lesion segmentation with Keras 3: models, losses, metrics, training and export.

Importing the package turns on TensorFlow's oneDNN kernels, unless `TF_ENABLE_ONEDNN_OPTS` is
already set (`0` keeps TensorFlow's own Eigen kernels). TensorFlow turns them on by itself only
on CPUs with AVX-512-class features; elsewhere, such as the AMD EPYC machines this project runs
its CI on, our models' first convolutions (few channels, large images) are 3-4x slower without
them (`benchmarks/conv_vs_torch.py`, `results/cpu-vs-torch/`). The variable is read when
TensorFlow is imported, so import `ph2_tf` first, or set it yourself.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
