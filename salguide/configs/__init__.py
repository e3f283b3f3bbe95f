"""Hydra configs shipped with salguide (root: train.yaml)."""
