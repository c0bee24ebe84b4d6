"""One error base (issue 10): every molks exception is a MolksError with a one-line message; the CLI
treats only those as bad input (exit 2), anything else as a bug (exit 1, traceback)."""

from __future__ import annotations

import ast
import errno
import importlib
import pickle
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import molks
from molks.cli.common import fail_cleanly
from molks.errors import FileAccessError, InputError, MissingFileError, MolksError, UnsupportedError, file_access

PACKAGE = Path(molks.__file__).resolve().parent


def _modules() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found.append((name, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def test_the_message_is_one_line_built_from_the_fields() -> None:
    assert str(MolksError("not a valid SMILES", path="in.smi", line=3)) == "in.smi:3: not a valid SMILES"
    assert str(MolksError("too long", item=4, option="--max-length")) == "item 4: --max-length: too long"
    assert str(MolksError("plain")) == "plain"
    err = MolksError("bad", path=Path("a.smi"))
    assert (err.path, err.reason, err.args) == ("a.smi", "bad", ("a.smi: bad",))


def _exception_classes() -> list[type]:
    classes = []
    for name, tree in _modules():
        if name.startswith("molks.models") or name.startswith("molks.cli.__main__"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                classes.append(getattr(importlib.import_module(name), node.name))
    assert len(classes) >= 20
    return classes


def test_every_molks_exception_derives_from_molks_error() -> None:
    assert [c.__name__ for c in _exception_classes() if not issubclass(c, MolksError)] == []


def test_every_molks_exception_has_a_kind() -> None:
    # Grouped by kind, as BoTorch and lark group theirs: a caller catches InputError, not 27 names.
    from molks.chemistry import ChemistryError

    kinds = (InputError, UnsupportedError, FileAccessError, ChemistryError)
    assert [c.__name__ for c in _exception_classes() if c is not MolksError and not issubclass(c, kinds)] == []
    assert issubclass(molks.GrammarError, InputError) and issubclass(InputError, ValueError)


def test_a_missing_gpu_is_unsupported_and_a_misspelt_device_is_bad_input() -> None:
    import torch

    from molks.devices import DeviceError, resolve_device

    with pytest.raises(InputError, match="not a device name") as misspelt:
        resolve_device("gpu0")
    assert isinstance(misspelt.value, DeviceError) and not isinstance(misspelt.value, UnsupportedError)
    if not torch.cuda.is_available():  # CI's machines have no GPU
        with pytest.raises(UnsupportedError, match="no CUDA GPU") as missing:
            resolve_device("cuda")
        assert isinstance(missing.value, DeviceError)


def test_no_library_module_imports_the_cli() -> None:
    offenders = []
    for name, tree in _modules():
        if name.startswith("molks.cli"):
            continue
        for node in ast.walk(tree):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{name} -> {t}" for t in targets if t == "molks.cli" or t.startswith("molks.cli.")]
    assert offenders == []


def test_one_atomic_write_implementation() -> None:
    writers = [name for name, tree in _modules() if any(
        isinstance(node, ast.Attribute) and node.attr in ("replace", "mkstemp") and isinstance(node.value, ast.Name)
        and node.value.id in ("os", "tempfile") for node in ast.walk(tree))]
    assert writers == ["molks.files"]


@pytest.mark.parametrize(
    "err",
    [
        MolksError("x", path="a", line=2, item=3, option="--o"),
        molks.GrammarError("no parse", position=4, item=1),
        FileAccessError("codes.npy", "cannot write: No space left on device", errno=errno.ENOSPC),
        MissingFileError("in.smi", "no such data file", errno=errno.ENOENT),
    ],
)
def test_errors_survive_pickling(err: MolksError) -> None:  # worker processes send them back
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__
    if isinstance(err, OSError):
        assert (back.errno, back.filename) == (err.errno, err.filename)


def test_file_access_names_the_file_and_stays_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught, file_access(tmp_path / "gone.smi", "cannot read"):
        (tmp_path / "gone.smi").read_text()
    err = caught.value
    assert isinstance(err, MissingFileError) and isinstance(err, MolksError)
    assert str(err) == f"{tmp_path / 'gone.smi'}: cannot read: No such file or directory"
    assert err.filename == str(tmp_path / "gone.smi") and err.errno == errno.ENOENT


def _app(exc: BaseException) -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    @fail_cleanly
    def run() -> None:
        raise exc

    return app


def test_the_cli_reports_bad_input_in_one_line_and_a_bug_as_a_bug() -> None:
    runner = CliRunner()
    bad_input = runner.invoke(_app(molks.GrammarError("no grammar 'smile'")), [])
    assert bad_input.exit_code == 2 and bad_input.output.strip() == "error: no grammar 'smile'"
    for bug in (ValueError("operands could not be broadcast"), OSError(5, "Input/output error")):
        result = runner.invoke(_app(bug), [])
        assert result.exit_code == 1 and result.exception is bug


def test_every_command_reports_bad_input_the_same_way(tmp_path: Path) -> None:
    from molks.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["grammar", "show", "no-such-grammar"])  # was a traceback
    assert shown.exit_code == 2 and shown.output.count("error:") == 1 and "no-such-grammar" in shown.output
    (tmp_path / "out.txt").mkdir()  # a directory where the file should go
    written = runner.invoke(app, ["data", "expressions", "--n", "3", "--out", str(tmp_path / "out.txt")])
    assert written.exit_code == 2 and f"error: {tmp_path / 'out.txt'}: cannot write" in written.output
