"""User grammars: loading .cfg files by path, parser selection, bad files, ambiguous grammars."""

from __future__ import annotations

from pathlib import Path

import nltk
import pytest

from molks.grammar import BUNDLED_GRAMMARS, Grammar, GrammarError, ParseError
from molks.grammar.general import chart_parser

LL1_TOY = "S -> 'a' S | 'b'\n"
LALR_TOY = "S -> S 'a' | 'b'\n"  # left recursive: not LL(1), but LALR(1)
AMBIGUOUS_TOY = "E -> E '+' E | 'a'\n"  # ambiguous: neither LL(1) nor LALR(1)
DANGLING_ELSE = "S -> 'if' S | 'if' S 'else' S | 'x'\n"  # ambiguous through a shift/reduce conflict only


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def nltk_trees(grammar: Grammar, text: str) -> list[list[int]]:
    """Every nltk ChartParser tree of ``text`` as production indices, in nltk's order."""
    index: dict[nltk.grammar.Production, int] = {}
    for i, production in enumerate(grammar.productions):
        index.setdefault(production, i)
    parser = chart_parser(grammar.cfg)
    return [[index[p] for p in tree.productions()] for tree in parser.parse(grammar.tokenize(text))]


def test_bundled_grammars_are_listed() -> None:
    assert set(BUNDLED_GRAMMARS) >= {"smiles", "arithmetic"}
    g = Grammar.load("smiles")
    assert g.path is not None and g.path.name == "smiles.cfg" and g.path.is_file()
    assert g.name == "smiles"


def test_user_grammar_loads_by_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "toy.cfg", LL1_TOY)
    g = Grammar.load(path)
    assert g.path == path.resolve()
    assert g.name == "toy"
    assert Grammar.load(str(path)).content_hash == g.content_hash
    assert g.parse("a a b") == [0, 0, 1]
    assert g.derive([0, 0, 1]) == "a a b"


def test_user_file_named_like_a_bundled_grammar_wins_when_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "smiles", LL1_TOY)
    assert Grammar.load("smiles").n_productions == 2
    assert Grammar.load("smiles").path == (tmp_path / "smiles").resolve()


def test_directory_named_like_a_bundled_grammar_does_not_hide_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smiles").mkdir()  # e.g. an output folder
    assert Grammar.load("smiles").parser_kind == "ll1"


@pytest.mark.parametrize(
    ("text", "kind"),
    [(LL1_TOY, "ll1"), (LALR_TOY, "lalr"), (AMBIGUOUS_TOY, "earley"), (DANGLING_ELSE, "earley")],
)
def test_parser_selection(tmp_path: Path, text: str, kind: str) -> None:
    g = Grammar.load(_write(tmp_path, "g.cfg", text))
    assert g.parser_kind == kind


def test_bundled_parser_kinds() -> None:
    assert Grammar.load("smiles").parser_kind == "ll1"
    assert Grammar.load("arithmetic").parser_kind == "lalr"


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (AMBIGUOUS_TOY, "a + a + a"),
        (AMBIGUOUS_TOY, "a + a + a + a"),
        (DANGLING_ELSE, "if if x else x"),
        (DANGLING_ELSE, "if if if x else x else x"),
    ],
)
def test_ambiguous_sentences_give_nltk_first_tree(text: str, sentence: str) -> None:
    g = Grammar(text)
    trees = nltk_trees(g, sentence)
    assert len(trees) > 1  # really ambiguous
    assert g.parse(sentence) == trees[0]
    assert g.derive(g.parse(sentence)) == sentence


class _FastClock:
    """Stands in for the ``time`` module: every reading is 100 s later, as on a very slow machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 100.0
        return self.now


def test_ambiguous_parse_has_no_wall_clock_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # nltk >= 3.10 stops a chart parse after 5 s by default; a busy machine must not make parse() fail.
    import nltk.parse.chart

    monkeypatch.setattr(nltk.parse.chart, "time", _FastClock())
    g = Grammar(AMBIGUOUS_TOY)
    assert g.parse("a + a + a") == [0, 0, 1, 1, 1]


def test_lalr_grammar_matches_nltk() -> None:
    g = Grammar(LALR_TOY)
    assert g.parse("b a a") == [0, 0, 1] == nltk_trees(g, "b a a")[0]


def test_incomplete_sentence_of_earley_grammar_ends_early() -> None:
    g = Grammar(AMBIGUOUS_TOY)
    with pytest.raises(ParseError, match="ends early") as info:
        g.parse("a + a +")
    assert info.value.position == len("a + a +")
    with pytest.raises(ParseError) as info:
        g.parse("a + + a")
    assert info.value.position == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no productions|not an nltk"),
        ("# only a comment\n", "no productions|not an nltk"),
        ("hello world\n", "not an nltk context-free grammar"),
        ("S -> A 'x'\n", "'A' is used but has no production"),
        ("# tokenizer: fancy\nS -> 'x'\n", "unknown tokenizer"),
        ("# join: comma\nS -> 'x'\n", "unknown join"),
        ("S -> 'a' | 'b' | 'a'\n", "listed twice"),
        ("S -> \n", "no non-empty terminals"),
    ],
)
def test_bad_grammar_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.cfg", text)
    with pytest.raises(GrammarError, match=message) as info:
        Grammar.load(path)
    assert str(path) in str(info.value)


def test_undecodable_grammar_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.cfg"
    path.write_bytes(b"\xff\xfe\x00S -> 'x'")
    with pytest.raises(GrammarError, match="cannot read") as info:
        Grammar.load(path)
    assert "binary.cfg" in str(info.value)


def test_missing_grammar_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GrammarError, match="not a bundled grammar"):
        Grammar.load(tmp_path / "nowhere.cfg")
    with pytest.raises(GrammarError, match="not a bundled grammar"):
        Grammar.load("no-such-grammar")


def test_grammar_errors_are_value_errors() -> None:
    assert issubclass(GrammarError, ValueError)
