"""Datasets: files of SMILES or expressions -> checked, parsed, cached production sequences.

>>> from molks.dataset import load_dataset
>>> ds = load_dataset("train.csv.gz", "smiles")          # doctest: +SKIP
>>> ds.padded().shape, ds.summary()["failures_by_reason"]  # doctest: +SKIP
((1584663, 113), {})
"""

from molks.dataset.cache import default_cache_dir
from molks.dataset.download import DATASETS, RemoteDataset, download, download_dataset
from molks.dataset.errors import CacheWarning, DatasetError
from molks.dataset.expressions import generate_sentences, random_derivation
from molks.dataset.io import load_texts
from molks.dataset.parsed import REASONS, Failure, ParsedDataset
from molks.dataset.pipeline import load_dataset

__all__ = [
    "DATASETS",
    "REASONS",
    "CacheWarning",
    "DatasetError",
    "Failure",
    "ParsedDataset",
    "RemoteDataset",
    "default_cache_dir",
    "download",
    "download_dataset",
    "generate_sentences",
    "load_dataset",
    "load_texts",
    "random_derivation",
]
