"""Trained models shipped with molks: one run directory per model, loadable by name (``molks.load("moses")``)."""

DEFAULT_MODEL = "moses"
"""The shipped model that the demo, the notebooks and the examples use."""
