"""What a person sends a table or tensor model, read but not yet fitted to a version.

A prediction request for a model that takes no image carries named values (JSON records,
or a CSV's lines) or numbers (a JSON array, a ``.npy``). The REST endpoint, the client and
the dashboard read them into one of these two types, and the data plane fits them to each
version that answers (``runtime/tabular.py``): with a canary or a shadow, two versions may
take the same request differently, so the fitting is theirs, not the reader's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Records:
    """Rows of named values, one mapping per row (feature or input name -> value).

    ``text`` says every value is the text of a CSV cell, to be read as its feature says (a
    number, a category); JSON records carry typed values. ``lines`` holds each row's line in
    its CSV, so that a bad value is named where the person can find it.
    """

    rows: tuple[Mapping[str, Any], ...]
    text: bool = False
    lines: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, i: int) -> str:
        """How row ``i`` is named in a message: "line 3" of a CSV, "record 2" of several, or "the record"."""
        if self.lines:
            return f"line {self.lines[i]}"
        return f"record {i + 1}" if len(self.rows) > 1 else "the record"

    def subset(self, indices: list[int]) -> Records:
        """The rows at ``indices``, still named by their own lines."""
        return Records(tuple(self.rows[i] for i in indices), self.text,
                       tuple(self.lines[i] for i in indices) if self.lines else ())


@dataclass(frozen=True)
class Numbers:
    """A tensor's numbers as sent: one input of the model's shape, or a batch ``[n, *shape]``."""

    array: np.ndarray


Given = Records | Numbers
