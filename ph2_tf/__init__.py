"""PH2 skin-lesion segmentation with Keras 3: models, losses, metrics, training and export.

Importing the package changes no environment variable. The `ph2-seg` command line turns on
TensorFlow's oneDNN kernels (`TF_ENABLE_ONEDNN_OPTS=1`, unless the variable is already set),
because TensorFlow turns them on by itself only on CPUs with AVX-512-class features, and
elsewhere our models' first convolutions (few channels, large images) are much slower without
them (`benchmarks/conv_vs_torch.py`, `results/cpu-vs-torch/`). To run the same kernels from
Python, call `use_onednn_kernels()` before TensorFlow is imported, or set the variable yourself;
`TF_ENABLE_ONEDNN_OPTS=0` keeps TensorFlow's own Eigen kernels.
"""

import os


def use_onednn_kernels():
    """Turns TensorFlow's oneDNN kernels on for this process, unless `TF_ENABLE_ONEDNN_OPTS` is set.

    TensorFlow reads the variable when it is imported, so this has no effect once it is loaded.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
