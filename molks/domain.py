"""What an item is: the one place that says how the strings a model works on are read from files,
checked, canonicalised and drawn.

>>> from molks.domain import MOLECULES
>>> MOLECULES.canonical("OCC"), MOLECULES.is_valid("C1CC")
('CCO', False)

Two kinds of item (a :class:`Domain` each):

* :class:`Molecules` -- SMILES through RDKit. Valid: RDKit reads it (molks hands it strings of at
  most 3,000 characters) into at least one atom; canonical form: RDKit's canonical SMILES; read
  from files as the first field of a line (or the ``smiles`` column); drawn as a grid of structures.
* :class:`Text` -- sentences of a grammar (arithmetic expressions, user grammars). Valid: it derives
  from the grammar; canonical form: its token sequence joined the grammar's way, so spacing does not
  matter; read as whole lines; drawn as a text table.

The same rule serves the dataset pipeline, ``LatentModel.encode``/``is_valid``/``decode_robust``,
``evaluate``'s validity and reconstruction, and the optimiser's "valid" and its report.

A run says which domain it works in with ``"domain"`` in its ``config.json``
(:func:`domain_of_config`); runs written before that key existed, the shipped ``moses`` among
them, get their grammar's default (:func:`domain_for_grammar`): molecules for a grammar with the
SMILES tokenizer, text otherwise.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from molks.errors import InputError

if TYPE_CHECKING:  # RDKit, the grammar and the drawing are imported on use: text-only work skips RDKit
    from rdkit import Chem

    from molks.grammar import Grammar

__all__ = [
    "DOMAINS",
    "MOLECULES",
    "TEXT",
    "Domain",
    "DomainError",
    "ItemError",
    "Molecules",
    "Text",
    "domain_for_grammar",
    "domain_named",
    "domain_of_config",
]


class DomainError(InputError):
    """A run names a domain molks does not know."""


class ItemError(InputError):
    """An item is not valid in its domain (an unreadable SMILES); the reason says why."""


class Domain(ABC):
    """A kind of item: how it is read, checked, canonicalised and drawn.

    ``name``: what ``config.json`` stores. ``molecular``: whether items are molecules (RDKit
    metrics, fingerprints and structure drawings apply). ``whole_lines``: a line of a text file is
    one item as a whole (else its first field; a SMILES may be followed by a name). ``column``:
    the column that holds the items in tables molks writes (``codes.csv``).
    """

    name: str
    molecular: bool
    whole_lines: bool
    column: str

    @abstractmethod
    def canonical(self, text: str | None) -> str | None:
        """The canonical form of a valid item (two spellings of one item are equal in it); None
        for None and for what is not valid."""

    def is_valid(self, text: str | None) -> bool:
        """Whether ``text`` is an item of this domain (False for None and empty strings)."""
        return self.canonical(text) is not None

    @abstractmethod
    def prepare(self, text: str) -> str:
        """``text`` in the form a grammar parses it (the canonical SMILES of a molecule; other
        items as given, since parsing them is their check). Raises :class:`ItemError` naming the
        item and the reason when it cannot be an item."""

    def draw(
        self,
        texts: Sequence[str],
        path: str | os.PathLike[str],
        legends: Sequence[str] | None = None,
        *,
        legend_name: str = "",
        max_items: int = 24,
        **layout: Any,
    ) -> Path:
        """A PNG of up to ``max_items`` valid items of ``texts`` with their ``legends`` (labelled
        ``legend_name`` where the drawing has a header), written atomically; returns the path.
        ``layout``: options of a grid of structures (``per_row``, ``size``; see
        :func:`molks.drawing.grid_png`), which a table does not have. Raises
        :class:`molks.drawing.DrawingError` when none can be drawn."""
        from molks.drawing import DrawingError

        if isinstance(texts, str):
            raise DrawingError("pass a list of strings, not a single string")
        if legends is not None and len(legends) != len(texts):
            raise DrawingError(f"got {len(legends)} legends for {len(texts)} items")
        return self._draw(list(texts), Path(path), legends, legend_name, max_items, layout)

    @abstractmethod
    def _draw(
        self, texts: list[str], path: Path, legends: Sequence[str] | None, legend_name: str, max_items: int, layout: dict[str, Any]
    ) -> Path:
        """:meth:`draw` with its arguments checked."""

    def read_items(self, path: str | os.PathLike[str], column: str | None = None) -> list[tuple[int, str]]:
        """The items of a data file as ``(line number, text)`` (see :func:`molks.dataset.load_texts`)."""
        from molks.dataset.io import load_texts

        return load_texts(path, column, whole_lines=self.whole_lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Molecules(Domain):
    """SMILES strings, read and canonicalised by RDKit."""

    name = "molecules"
    molecular = True
    whole_lines = False
    column = "smiles"

    def read(self, text: str | None) -> Chem.Mol | None:
        """RDKit's molecule of ``text``, or None where it is not valid (one RDKit parse, log blocked)."""
        from molks.dataset.molecules import read_smiles

        return read_smiles(text)

    def canonical(self, text: str | None) -> str | None:
        from rdkit import Chem

        mol = self.read(text)
        return None if mol is None else Chem.MolToSmiles(mol)

    def is_valid(self, text: str | None) -> bool:
        # Hot path of decode_robust: one parse, no canonical SMILES written that nobody reads.
        return self.read(text) is not None

    def prepare(self, text: str) -> str:
        from molks.dataset.molecules import MoleculeError, check_smiles

        try:
            return check_smiles(text)
        except MoleculeError as err:
            raise ItemError(f"{_abbreviated(text)!r} is not a valid SMILES ({err})") from None

    def _draw(
        self, texts: list[str], path: Path, legends: Sequence[str] | None, legend_name: str, max_items: int, layout: dict[str, Any]
    ) -> Path:
        """A grid of structures, each with its legend below it (``legend_name`` is not drawn)."""
        from molks.drawing import draw_molecules

        return draw_molecules(texts, path, legends, max_molecules=max_items, **layout)


class Text(Domain):
    """Sentences of ``grammar``; without a grammar (a report drawn from a saved optimisation state)
    every non-empty string is valid and its own canonical form."""

    name = "text"
    molecular = False
    whole_lines = True
    column = "text"

    def __init__(self, grammar: Grammar | None = None) -> None:
        self.grammar = grammar

    def canonical(self, text: str | None) -> str | None:
        if not self.is_valid(text):
            return None
        if self.grammar is None:
            return text
        return self.grammar.detokenize(self.grammar.tokenize(text))

    def is_valid(self, text: str | None) -> bool:
        """Non-empty and, with a grammar, derived from it (not merely tokenised)."""
        from molks.grammar import GrammarError

        if not text or self.grammar is None:
            return bool(text)
        try:
            self.grammar.parse(text)
        except GrammarError:
            return False
        return True

    def prepare(self, text: str) -> str:
        return text

    def _draw(
        self, texts: list[str], path: Path, legends: Sequence[str] | None, legend_name: str, max_items: int, layout: dict[str, Any]
    ) -> Path:
        """A table: a header, then one line per valid item, its legend right-aligned before it
        (``layout`` is for grids of structures and does not apply)."""
        from molks.drawing import DrawingError, draw_text_table

        shown = [i for i, text in enumerate(texts) if self.is_valid(text)][:max_items]
        if not shown:
            raise DrawingError(f"none of the {len(texts)} strings is valid; nothing to draw")
        if legends is None:
            return draw_text_table([texts[i] for i in shown], path)
        width = max(8, len(legend_name), *(len(legends[i]) for i in shown))
        lines = [f"{legend_name:>{width}}   string", *(f"{legends[i]:>{width}}   {texts[i]}" for i in shown)]
        return draw_text_table(lines, path)

    def __repr__(self) -> str:
        return f"Text({'' if self.grammar is None else repr(self.grammar.name)})"


MOLECULES = Molecules()
TEXT = Text()
DOMAINS = ("molecules", "text")


def domain_named(name: str, grammar: Grammar | None = None) -> Domain:
    """The domain called ``name`` (one of :data:`DOMAINS`); text items are checked against ``grammar``."""
    if name == "molecules":
        return MOLECULES
    if name == "text":
        return TEXT if grammar is None else Text(grammar)
    raise DomainError(f"unknown domain {name!r}; molks knows {', '.join(DOMAINS)}")


def domain_for_grammar(grammar: Grammar) -> Domain:
    """The default domain of a grammar: molecules when it tokenizes SMILES, text otherwise."""
    return MOLECULES if grammar.tokenizer_name == "smiles" else Text(grammar)


def domain_of_config(doc: Mapping[str, Any], grammar: Grammar) -> Domain:
    """The domain a run's ``config.json`` (``doc``) names, or its grammar's default when it names none
    (runs written before the key existed, the shipped models)."""
    name = doc.get("domain")
    if name is None:
        return domain_for_grammar(grammar)
    if not isinstance(name, str):
        raise DomainError(f"the domain of a run must be one of {', '.join(DOMAINS)}, got {name!r}")
    return domain_named(name, grammar)


def _abbreviated(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a one-line message (a hostile line can be megabytes)."""
    return text if len(text) <= limit else f"{text[:limit]}..."
