"""Composed omegaconf configs: YAML groups in this folder and the loader that composes them."""
