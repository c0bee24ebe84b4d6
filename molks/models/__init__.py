"""Trained models shipped with molks: one run directory per model, loadable by name (``molks.load("moses-small")``)."""
