"""Parsers for grammars that are not LL(1): lark's LALR(1) when the grammar allows it,
otherwise lark's Earley parser, with nltk's ChartParser deciding ambiguous sentences
so that the result is always nltk's first tree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import lark
import nltk
from lark.lexer import Lexer

from molks.grammar.analysis import Production
from molks.grammar.errors import AmbiguityError, ParseError, TokenizeError


class _TokenLexer(Lexer):
    """Feeds lark already-tokenized input: a list of terminal type names."""

    def __init__(self, lexer_conf: object) -> None:  # lark passes its configuration
        pass

    def lex(self, data: Sequence[str], *args: object) -> Iterator[lark.Token]:  # type: ignore[override]
        for position, type_name in enumerate(data):
            yield lark.Token(type_name, type_name, start_pos=position)


class GeneralParser:
    """Parses any CFG; ``kind`` says which algorithm ("lalr" or "earley") it runs."""

    def __init__(
        self,
        n_nonterminals: int,
        productions: Sequence[Production],
        terminals: Sequence[str],
        cfg: nltk.CFG,
    ) -> None:
        self._terminal_type = {t: f"T{j}" for j, t in enumerate(terminals)}
        self._cfg = cfg
        self._nltk_parser: nltk.ChartParser | None = None
        self._production_index: dict[nltk.grammar.Production, int] = {}
        for index, production in enumerate(cfg.productions()):
            self._production_index.setdefault(production, index)

        def name(symbol: int) -> str:
            return f"n{symbol}" if symbol < n_nonterminals else f"T{symbol - n_nonterminals}"

        rules: dict[int, list[str]] = {}
        for index, (lhs, rhs) in enumerate(productions):
            rules.setdefault(lhs, []).append(f"{' '.join(name(s) for s in rhs)} -> p{index}")
        text = "\n".join(f"n{lhs}: " + "\n    | ".join(alts) for lhs, alts in rules.items())
        if terminals:
            text += "\n%declare " + " ".join(self._terminal_type.values())
        try:
            # strict: lark otherwise resolves shift/reduce conflicts silently (as shift), which would
            # accept ambiguous grammars as LALR and return a parse other than nltk's first tree.
            self._lark = lark.Lark(text, parser="lalr", lexer=_TokenLexer, start="n0", strict=True)
            self.kind = "lalr"
        except lark.exceptions.GrammarError:
            self._lark = lark.Lark(text, parser="earley", lexer=_TokenLexer, start="n0", ambiguity="explicit")
            self.kind = "earley"

    def parse(self, tokens: Sequence[str]) -> list[int]:
        types = []
        for position, token in enumerate(tokens):
            type_name = self._terminal_type.get(token)
            if type_name is None:
                raise TokenizeError(f"token {token!r} is not a terminal of the grammar", position=position)
            types.append(type_name)
        try:
            tree = self._lark.parse(types)
        except lark.exceptions.UnexpectedToken as err:
            position = err.token.start_pos if err.token.type != "$END" else len(tokens)
            if position is None or position >= len(tokens):
                raise ParseError("the sentence ends early", position=len(tokens)) from None
            raise ParseError(
                f"unexpected token {tokens[position]!r} at token {position}", position=position
            ) from None
        except lark.exceptions.UnexpectedInput as err:
            position = getattr(err, "pos_in_stream", None)
            if position is None or position < 0 or position >= len(tokens):  # UnexpectedEOF says -1
                raise ParseError("the sentence ends early", position=len(tokens)) from None
            raise ParseError(
                f"unexpected token {tokens[position]!r} at token {position}", position=position
            ) from None
        ids = _preorder(tree)
        if ids is None:  # ambiguous sentence: nltk's first tree is the reference
            return self._nltk_first_tree(tokens)
        return ids

    def _nltk_first_tree(self, tokens: Sequence[str]) -> list[int]:
        if self._nltk_parser is None:
            self._nltk_parser = chart_parser(self._cfg)
        try:
            tree = next(iter(self._nltk_parser.parse(list(tokens))))
        except ValueError:  # nltk >= 3.9.2 refuses to extract trees past a budget (CWE-770)
            raise AmbiguityError(
                f"highly ambiguous: more parse trees than nltk will enumerate ({len(tokens)} tokens)"
            ) from None
        return [self._production_index[p] for p in tree.productions()]


def chart_parser(cfg: nltk.CFG) -> nltk.ChartParser:
    """nltk's ChartParser without a wall-clock limit.

    nltk >= 3.10 raises TimeoutError after 5 s of chart parsing by default, which a long sentence
    or a busy machine can reach; older nltk has no such limit (nor the ``max_time`` argument).
    """
    try:
        return nltk.ChartParser(cfg, max_time=None)
    except TypeError:
        return nltk.ChartParser(cfg)


def _preorder(tree: lark.Tree) -> list[int] | None:
    """Production indices in pre-order, or None if the tree has an ambiguity node."""
    out: list[int] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        label = node.data
        if label == "_ambig":
            return None
        out.append(int(label[1:]))
        stack.extend(child for child in reversed(node.children) if isinstance(child, lark.Tree))
    return out
