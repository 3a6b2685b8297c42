"""VersionDescription: what a version takes and gives (its manifest's input, output and members).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yyai_kernel.types.jsonview import JsonView
from yyai_kernel.types.specs import Combine, FileRole, InputSpec, OutputSpec
from yyai_kernel.types.status import VersionStatus

COMBINED_OUTPUT = "output"  # the v2 name of an ensemble's combined output


@dataclass(frozen=True)
class VersionDescription(JsonView):
    """What a version takes and gives: the manifest's input and output specs, and its members' names.

    ``input`` and ``output`` write the manifest's own objects (documented in the archive
    format), so they travel as the manifest writes them; ``input`` with its defaults stated.
    """

    name: str
    version: int
    input: InputSpec
    output: OutputSpec
    members: tuple[str, ...]
    combine: Combine = Combine.MEAN
    description: str = ""
    status: VersionStatus | None = None

    @property
    def classification(self) -> bool:
        return self.output.classification

    @property
    def labels(self) -> list[str]:
        """The classification labels, or the regression output names."""
        return list(self.output.columns)

    @property
    def output_width(self) -> int:
        return self.output.width

    @property
    def has_combined(self) -> bool:
        return self.combine is Combine.MEAN or len(self.members) == 1

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def output_names(self) -> list[str]:
        """The v2 output names: ``output`` (when combined), then one per member."""
        names = [COMBINED_OUTPUT] if self.has_combined else []
        return names + [m for m in self.members if m != COMBINED_OUTPUT or not names]

    def preprocessing(self) -> str:
        """How image pixels become the model's input, in one line."""
        return self.input.preprocessing()

    def with_status(self, status: VersionStatus | None) -> VersionDescription:
        return VersionDescription(self.name, self.version, self.input, self.output, self.members,
                                  self.combine, self.description, status)

    def to_json(self) -> dict[str, Any]:
        body = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "input": self.input.to_json(),
            "output": self.output.to_json(),
            "output_width": self.output_width,
            "members": list(self.members),
            "combine": self.combine.value,
            "has_combined": self.has_combined,
        }
        if self.status is not None:
            body["status"] = self.status.to_json()
        return body

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VersionDescription:
        status = d.get("status")
        return cls(d["name"], int(d["version"]), InputSpec.from_json(d["input"]), OutputSpec.from_json(d["output"]),
                   tuple(d["members"]), Combine(d.get("combine", Combine.MEAN)), d.get("description", ""),
                   VersionStatus.from_json(status) if status else None)



BUNDLED_KEYS = {FileRole.SAMPLE: "samples", FileRole.EVAL: "sets"}  # the reply's key for each role's files


@dataclass(frozen=True)
class BundledFiles(JsonView):
    """The files of one role (sample inputs, labelled sets) that go with a version.

    Samples and labelled sets belong to the model more than to one version: a version
    whose archive bundles none (one uploaded from a notebook, say) gets those of the newest
    version that does. ``source`` says which version's archive holds them (None: no version
    bundles any), so that every interface can say where they came from.
    """

    name: str
    version: int
    source: int | None
    role: FileRole
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source,
                BUNDLED_KEYS.get(self.role, "files"): list(self.files)}

    @classmethod
    def from_json(cls, d: dict[str, Any], role: FileRole) -> BundledFiles:
        source = d.get("source", d["version"])
        return cls(d["name"], int(d["version"]), None if source is None else int(source), role,
                   tuple(d.get(BUNDLED_KEYS.get(role, "files"), ())))

    def where(self) -> str:
        """Where they came from, for people: "" when from the version itself."""
        if self.source is None or self.source == self.version:
            return ""
        return f"from v{self.source} (v{self.version} bundles none)"
