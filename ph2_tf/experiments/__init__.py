"""Experiments on the stages: the study's grid and its tuner, soups, ablations, reports."""
