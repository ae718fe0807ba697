"""Stage 3, training: configs and recipes, the fit loop, callbacks, distribution, run folders."""
