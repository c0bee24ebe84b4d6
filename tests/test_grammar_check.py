"""``check_grammar`` and ``molks grammar check``: coverage, ambiguity, unused symbols, conflicts."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from molks.cli import app
from molks.grammar import Grammar
from molks.grammar import check as check_module
from molks.grammar.check import check_grammar, read_lines

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "moses_sample.smi"

# E is ambiguous; B can never finish (unproductive); C is never used (unreachable).
MESSY = "E -> E '+' E | 'a' | B\nB -> B 'b'\nC -> 'c'\n"


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    return SAMPLE.read_text(encoding="utf-8").split()[:300]


def test_smiles_report_on_molecules(molecules: list[str]) -> None:
    g = Grammar.load("smiles")
    lines = molecules[:50] + ["CC(C", "CX", "C[U]C"] + molecules[50:]
    report = check_grammar(g, lines)
    assert report.n_items == len(lines) and report.n_parsed == len(lines) - 3 and report.n_failed == 3
    assert [(f.line, f.text) for f in report.failures] == [(51, "CC(C"), (52, "CX"), (53, "C[U]C")]
    assert "ends early" in report.failures[0].note and "'U'" in report.failures[2].note
    assert report.parser_kind == "ll1" and report.n_ambiguity_checked == 0 and not report.ambiguous
    assert "none by construction" in report.ambiguity_method and "LL(1)" in report.ambiguity_method
    assert report.unreachable == [] and report.unproductive == [] and report.n_ll1_conflicts == 0
    lengths = [len(g.parse(s)) for s in molecules]
    assert report.longest_length == max(lengths)
    assert report.longest is not None and len(g.parse(report.longest.text)) == max(lengths)
    assert report.longest.text == lines[report.longest.line - 1]
    text = report.format()
    assert "297 of 300" not in text and f"{len(lines) - 3:,} of {len(lines):,}" in text
    assert "line 53: 'C[U]C'" in text


def test_failures_are_capped_but_counted() -> None:
    g = Grammar.load("arithmetic")
    report = check_grammar(g, ["x +"] * 25 + ["x"], max_failures=4)
    assert report.n_failed == 25 and [f.line for f in report.failures] == [1, 2, 3, 4]
    assert "the first 4" in report.format()


def test_messy_grammar_report() -> None:
    g = Grammar(MESSY)
    lines = ["a + a + a", "a", "a + a", "a +", "a + a + a + a"]
    report = check_grammar(g, lines, line_numbers=[10, 20, 30, 40, 50], sample=10)
    assert report.parser_kind == "earley"
    assert report.unreachable == ["C"] and report.unproductive == ["B"]
    assert report.n_ambiguity_checked == 4  # the parsed items
    assert [(a.line, a.text) for a in report.ambiguous] == [(10, "a + a + a"), (50, "a + a + a + a")]
    assert [f.line for f in report.failures] == [40]
    assert report.n_ll1_conflicts == 1
    (conflict,) = report.ll1_conflicts
    assert conflict.nonterminal == "E" and conflict.lookaheads == ["'a'"]
    assert conflict.productions == ["E -> E '+' E", "E -> 'a'"]
    assert report.longest is not None and report.longest.line == 50 and report.longest_length == 7
    assert json.loads(json.dumps(report.to_dict()))["unproductive"] == ["B"]


def test_ambiguity_sample_is_bounded_and_seeded() -> None:
    g = Grammar(MESSY)
    lines = ["a"] * 30 + ["a + a + a"] * 30
    first = check_grammar(g, lines, sample=7, seed=3)
    assert first.n_ambiguity_checked == 7
    assert first.ambiguous == check_grammar(g, lines, sample=7, seed=3).ambiguous
    assert check_grammar(g, lines, sample=0).n_ambiguity_checked == 0


def test_lalr_grammar_is_unambiguous_by_construction() -> None:
    report = check_grammar(Grammar.load("arithmetic"), ["x + 1", "sin( x ) * 2"])
    assert "LALR(1)" in report.ambiguity_method and report.n_ambiguity_checked == 0
    assert report.n_ll1_conflicts == 7  # left recursion: S's four productions all start alike
    assert len(report.ll1_conflicts) == 1 and len(report.ll1_conflicts[0].lookaheads) == 7


@pytest.mark.parametrize(
    ("text", "cycle"),
    [("S -> S | 'a'\n", "S -> S"), ("S -> T 'b' | 'a'\nT -> U\nU -> T | 'c'\n", "T -> U -> T"),
     ("S -> E S | 'a'\nE -> \n", "S -> S")],  # the last: a cycle through a nullable neighbour
    ids=["unit-loop", "two-step", "nullable"],
)  # fmt: skip
def test_a_cycle_of_derivations_is_ambiguity_whatever_the_parser(text: str, cycle: str) -> None:
    report = check_grammar(Grammar(text), ["a"])
    assert report.cycles[0] == cycle
    assert report.ambiguity_method.startswith("ambiguous:") and "infinitely many parses" in report.ambiguity_method
    assert "by construction" not in report.format()


def test_an_unproductive_grammar_says_so_when_an_item_does_not_parse() -> None:
    from molks.grammar.errors import ParseError

    with pytest.raises(ParseError, match="S derives no string of terminals") as caught:
        Grammar("S -> S 'a'\n").parse("a")
    assert "(one of )" not in str(caught.value)


def test_parallel_check_equals_serial(molecules: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    g = Grammar.load("smiles")
    lines = molecules + ["CC(C"] + molecules
    serial = check_grammar(g, lines)
    monkeypatch.setattr(check_module, "_PARALLEL_MIN", 0)
    monkeypatch.setattr(check_module, "_CHUNK", 100)
    parallel = check_grammar(g, lines, processes=2)
    assert parallel.to_dict() == serial.to_dict()
    assert serial.failures[0].line == 301


def test_read_lines_formats(tmp_path: Path) -> None:
    txt = tmp_path / "expr.txt"
    txt.write_text("x + 1\n\n  sin( x )  \n", encoding="utf-8")
    assert read_lines(txt) == (["x + 1", "sin( x )"], [1, 3])
    smi = tmp_path / "mols.smi.gz"
    smi.write_bytes(gzip.compress(b"CCO ethanol\nc1ccccc1\n\nCC(=O)O\tacetic acid\n"))
    assert read_lines(smi) == (["CCO", "c1ccccc1", "CC(=O)O"], [1, 2, 4])
    csv = tmp_path / "mols.csv"
    csv.write_text("id,SMILES,split\n1,CCO,train\n2,,test\n3,c1ccccc1,test\n", encoding="utf-8")
    assert read_lines(csv) == (["CCO", "c1ccccc1"], [2, 4])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("empty.txt", b"", "holds no items"), ("blank.smi", b"\n  \n", "holds no items"),
     ("bad.smi.gz", b"not gzip", "cannot read"), ("latin.txt", b"caf\xe9\n", "cannot read")],
)
def test_read_lines_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_lines(path)
    assert name in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_lines(tmp_path / "missing.smi")


def test_cli_check(tmp_path: Path, molecules: list[str]) -> None:
    data = tmp_path / "mols.smi"
    data.write_text("\n".join(molecules[:100] + ["C1CC("]) + "\n", encoding="utf-8")
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["grammar", "check", "smiles", str(data), "--sample", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "100 of 101 items" in result.output and "line 101: 'C1CC('" in result.output
    assert "none by construction" in result.output and "longest derivation" in result.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n_parsed"] == 100 and report["failures"][0]["line"] == 101 and report["grammar"] == "smiles"


def test_cli_check_user_grammar(tmp_path: Path) -> None:
    grammar = tmp_path / "messy.cfg"
    grammar.write_text(MESSY, encoding="utf-8")
    data = tmp_path / "sums.txt"
    data.write_text("a + a + a\na\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["grammar", "check", str(grammar), str(data), "--sample", "2"])
    assert result.exit_code == 0, result.output
    assert "1 of 2 sampled items have more than one parse" in result.output
    assert "unreachable nonterminals: C" in result.output and "unproductive nonterminals: B" in result.output
    assert "E with next 'a'" in result.output


def test_cli_check_missing_files(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["grammar", "check", "smiles", str(tmp_path / "nothing.smi")])
    assert result.exit_code == 2 and "nothing.smi: no such data file" in result.output
    data = tmp_path / "x.txt"
    data.write_text("x\n", encoding="utf-8")
    result = runner.invoke(app, ["grammar", "check", str(tmp_path / "nothing.cfg"), str(data)])
    assert result.exit_code == 2 and "nothing.cfg" in result.output and "not a bundled grammar" in result.output
