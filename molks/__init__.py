"""molks: grammar autoencoders with a Gaussian-mixture latent space, and Bayesian optimisation in it.

>>> import molks
>>> g = molks.Grammar.load("smiles")
>>> m = molks.load("moses-small")
"""

from molks.api import LatentModel, load
from molks.grammar import Grammar, GrammarError

__all__ = ["Grammar", "GrammarError", "LatentModel", "load"]
__version__ = "0.1.0"
