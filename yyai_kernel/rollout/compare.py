"""Comparing a shadow's output with the answer that was sent, row by row: a pure function.

Classification agrees on the top-1 label; regression on every output after the manifest's
rounding. Used by the shadow runner (``shadow.py``); imports only numpy, the errors and the types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.types.specs import OutputSpec


@dataclass(frozen=True)
class RowComparison:
    """One input row: did the shadow agree, and the largest absolute difference of its outputs.

    Classification: agreement is the same top-1 label; the difference is over the
    probabilities of the labels both versions have. Regression: agreement is every
    output equal after the manifest's rounding; the difference is the absolute error.
    """

    agree: bool
    abs_diff: float | None
    top: str | None
    shadow_top: str | None


def compare_outputs(real: np.ndarray, real_spec: OutputSpec, shadow: np.ndarray,
                    shadow_spec: OutputSpec) -> list[RowComparison]:
    """Row by row comparison of two ``[B, K]`` outputs; InvalidInputError when they cannot be compared."""
    kind = real_spec.kind
    if kind is not shadow_spec.kind or len(real) != len(shadow):
        raise InvalidInputError(f"The shadow's output ({shadow_spec.kind.value}, {len(shadow)} rows) cannot be "
                                f"compared with the default's ({kind.value}, {len(real)} rows).")
    if real_spec.classification:
        return _compare_classes(real, list(real_spec.labels), shadow, list(shadow_spec.labels))
    if real.shape != shadow.shape:
        raise InvalidInputError(f"The shadow's regression outputs {list(shadow.shape[1:])} differ from the "
                                f"default's {list(real.shape[1:])}.")
    digits = int(real_spec.rounding)
    errors = np.abs(real.astype(np.float64) - shadow.astype(np.float64)).max(axis=1)
    same = (np.round(real.astype(np.float64), digits) == np.round(shadow.astype(np.float64), digits)).all(axis=1)
    return [RowComparison(bool(s), float(e), None, None) for s, e in zip(same, errors)]


def _compare_classes(real: np.ndarray, labels: list[str], shadow: np.ndarray, shadow_labels: list[str]):
    common = [label for label in labels if label in shadow_labels]
    columns = [labels.index(label) for label in common]
    shadow_columns = [shadow_labels.index(label) for label in common]
    rows = []
    for r, s in zip(real, shadow):
        top, shadow_top = labels[int(np.argmax(r))], shadow_labels[int(np.argmax(s))]
        diff = float(np.abs(r[columns].astype(np.float64) - s[shadow_columns]).max()) if common else None
        rows.append(RowComparison(top == shadow_top, diff, top, shadow_top))
    return rows

