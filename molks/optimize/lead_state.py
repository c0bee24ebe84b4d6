"""The saved state of a lead optimisation (:mod:`molks.optimize.lead`): what a run is, what it has done.

Files in the run's folder:

- ``lead.json``          the run's identity (settings, target, model, starting molecules), where the
  molecules came from, the target's failed calls (in the whole run and in a row, and the last
  reason) and the SHA-256 of every molecule's saved result; rewritten after each molecule
- ``lead.sha256``        the SHA-256 of ``lead.json`` (:mod:`molks.checksums`), checked on resume
- ``molecules/NNNNN.json`` each molecule's result, written as soon as it is done

A result is written before ``lead.json`` names it, so a run killed between the two leaves a result
that ``lead.json`` does not name: it is done again on resume (a molecule's search depends only on
(seed, index), so it comes out the same). A result that ``lead.json`` names with another SHA-256,
or a ``lead.json`` that is not the one ``lead.sha256`` records, was altered on disk: refused.
Runs saved before ``lead.json`` held these (no ``results``, no ``lead.sha256``) resume unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from molks.checksums import ChecksumError, verify_checksum, write_checksummed
from molks.errors import InputError, file_access
from molks.files import atomic_write_text

__all__ = ["LEAD_FILE", "RECORDS", "LeadError", "LeadState", "TargetFailures", "read_records", "record_path"]

LEAD_FILE = "lead.json"
RECORDS = "molecules"


class LeadError(InputError):
    """A lead optimisation cannot start or resume (bad settings, no molecules, another run's folder,
    saved files unreadable or altered on disk)."""


@dataclass
class TargetFailures:
    """The target's failed calls: in the whole run, in a row (since the last good call), the last reason."""

    calls: int = 0
    in_a_row: int = 0
    last: str = ""


@dataclass
class LeadState:
    """``lead.json`` of the run in ``out`` (see the module's docstring)."""

    out: Path
    identity: dict[str, Any]
    source: str = ""
    failures: TargetFailures = field(default_factory=TargetFailures)
    results: dict[int, str] | None = field(default_factory=dict)  # index -> SHA-256 of its result; None: unchecked

    @property
    def path(self) -> Path:
        return self.out / LEAD_FILE

    def save(self) -> None:
        """Write ``lead.json`` atomically with its SHA-256 in ``lead.sha256``."""
        doc: dict[str, Any] = {"identity": self.identity, "source": self.source, "target_failures": asdict(self.failures)}
        if self.results is not None:
            doc["results"] = {str(i): digest for i, digest in sorted(self.results.items())}
        write_checksummed(self.path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, out: Path) -> LeadState:
        """The state saved in ``out``; altered on disk (``lead.sha256``) or unreadable: a :class:`LeadError`."""
        path = out / LEAD_FILE
        try:
            verify_checksum(path, "the lead optimisation's state")
        except ChecksumError as err:
            raise LeadError(f"--resume: {err}") from None
        with file_access(path, "cannot read"):
            text = path.read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
            failures = TargetFailures(**doc.get("target_failures", {}))
            results = doc.get("results")
            return cls(out, doc["identity"], doc.get("source", ""), failures,
                       None if results is None else {int(i): str(d) for i, d in results.items()})  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise LeadError(f"{path}: not a lead optimisation's state ({type(err).__name__}: {err})") from None

    def save_record(self, record: dict[str, Any]) -> None:
        """Write one molecule's result, then name it (with its SHA-256) in ``lead.json``."""
        data = json.dumps(record) + "\n"
        atomic_write_text(record_path(self.out, record["index"]), data)
        if self.results is not None:
            self.results[record["index"]] = hashlib.sha256(data.encode("utf-8")).hexdigest()
        self.save()

    def records(self, n: int, log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
        """The results saved so far (index < n), each checked against the SHA-256 ``lead.json`` holds."""
        records = read_records(self.out, n)
        if self.results is None:
            return records
        for index in sorted(records):
            digest = self.results.get(index)
            path = record_path(self.out, index)
            if digest is None:  # written just before a kill, never named: done again
                log(f"{path}: not named in {LEAD_FILE} (the run ended while saving it); that molecule is done again")
                del records[index]
            elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise LeadError(
                    f"--resume: {path}: its SHA-256 is not the one {self.path} recorded when it was written: the result "
                    "was altered or damaged on disk (restore it, or delete it to do that molecule again)"
                )
        for index in set(self.results) - set(records):  # named but deleted: done again
            del self.results[index]
        return records


def record_path(out: Path, index: int) -> Path:
    """Where the result of the molecule ``index`` is saved."""
    return out / RECORDS / f"{index:05d}.json"


def read_records(out_dir: str | os.PathLike[str], n: int) -> dict[int, dict[str, Any]]:
    """The results saved in ``out_dir`` so far, by the index of their starting molecule (< n), unchecked."""
    records: dict[int, dict[str, Any]] = {}
    for index in range(n):
        path = record_path(Path(out_dir), index)
        if path.is_file():
            with file_access(path, "cannot read"):
                try:
                    records[index] = json.loads(path.read_text())
                except json.JSONDecodeError as err:
                    raise LeadError(f"{path}: not a saved result ({err}); delete it to redo that molecule") from None
    return records
