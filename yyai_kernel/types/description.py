"""VersionDescription: what a version takes and gives (its manifest's input, output and members).
"""

from __future__ import annotations

from dataclasses import dataclass

from yyai_kernel.types.jsonview import JsonView
from yyai_kernel.types.status import VersionStatus

COMBINED_OUTPUT = "output"  # the v2 name of an ensemble's combined output


@dataclass(frozen=True)
class VersionDescription(JsonView):
    """What a version takes and gives: the manifest's input and output specs, and its members.

    ``input`` and ``output`` are the manifest's own objects (documented in the archive
    format), so they travel as the manifest writes them.
    """

    name: str
    version: int
    input: dict
    output: dict
    members: tuple[str, ...]
    combine: str = "mean"
    description: str = ""
    status: VersionStatus | None = None

    @property
    def classification(self) -> bool:
        return self.output["kind"] == "classification"

    @property
    def labels(self) -> list[str]:
        """The classification labels, or the regression output names."""
        return list(self.output.get("labels") or self.output.get("names") or [])

    @property
    def output_width(self) -> int:
        return len(self.labels)

    @property
    def has_combined(self) -> bool:
        return self.combine == "mean" or len(self.members) == 1

    @property
    def input_name(self) -> str:
        return self.input.get("name", "input")

    @property
    def output_names(self) -> list[str]:
        """The v2 output names: ``output`` (when combined), then one per member."""
        names = [COMBINED_OUTPUT] if self.has_combined else []
        return names + [m for m in self.members if m != COMBINED_OUTPUT or not names]

    def preprocessing(self) -> str:
        """How image pixels become the model's input, in one line."""
        spec = self.input
        return (f"x = pixel * {spec.get('scale', 1.0):g} + {spec.get('offset', 0.0):g}, "
                f"{spec.get('color', 'rgb')}, shape {list(spec['shape'])} {spec.get('dtype', 'float32')}")

    def with_status(self, status: VersionStatus | None) -> "VersionDescription":
        return VersionDescription(self.name, self.version, self.input, self.output, self.members,
                                  self.combine, self.description, status)

    def to_json(self) -> dict:
        body = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "input": self.input,
            "output": self.output,
            "output_width": self.output_width,
            "members": list(self.members),
            "combine": self.combine,
            "has_combined": self.has_combined,
        }
        if self.status is not None:
            body["status"] = self.status.to_json()
        return body

    @classmethod
    def from_json(cls, d: dict) -> "VersionDescription":
        status = d.get("status")
        return cls(d["name"], int(d["version"]), d["input"], d["output"], tuple(d["members"]),
                   d.get("combine", "mean"), d.get("description", ""),
                   VersionStatus.from_json(status) if status else None)

