"""The typed values every layer shares: model references, states, statuses, descriptions,
predictions and the rollout types.

Why one package: the registry, the data plane, the REST handlers, the HTTP client, the
dashboard and the metrics all speak about the same facts (a version's state, a model's
default, a prediction's labels). Each fact is defined once, as an enum or a frozen
dataclass that writes its own JSON (``to_json``) and, where a client reads it back,
parses it (``from_json``). JSON is made at the edge; the layers pass these types.

- ``refs.py``: the one rule for model names, version numbers and labels;
- ``jsonview.py``: results that also read like their JSON, for scripts;
- ``latency.py``: latency percentiles;
- ``status.py``: version states, model and server statuses, what an upload did;
- ``specs.py``: the manifest's specs (input, output, members, files) and its vocabularies;
- ``description.py``: what a version takes and gives;
- ``given.py``: what a person sends a table or tensor model (records, numbers);
- ``prediction.py``: one answer, labelled for people, and its explanations;
- ``rollout.py``: traffic policies (canary, shadow) and what they saw.

Everything is re-exported here: ``from yyai_kernel.types import ModelStatus``. The package
imports only numpy, the errors and the hints, so every layer may import it.
"""

from yyai_kernel.types.description import (
    BUNDLED_KEYS,
    COMBINED_OUTPUT,
    BundledFiles,
    VersionDescription,
)
from yyai_kernel.types.given import (
    Given,
    Numbers,
    Records,
)
from yyai_kernel.types.jsonview import (
    JsonView,
)
from yyai_kernel.types.latency import (
    Latency,
)
from yyai_kernel.types.prediction import (
    COLD_START_HEADER,
    ExplainMethod,
    Explanation,
    Prediction,
    check_explain,
    explain_method_for,
)
from yyai_kernel.types.refs import (
    LABEL_PATTERN,
    LABEL_RE,
    MAX_VERSION_DIGITS,
    NAME_PATTERN,
    NAME_RE,
    ModelRef,
    check_label,
    check_name,
    parse_version,
    parse_version_ref,
    require_version,
)
from yyai_kernel.types.rollout import (
    POLICY_EXAMPLE,
    SPLITS,
    STICKY_HEADER,
    CanaryStats,
    Choice,
    Disagreement,
    InputReference,
    RolloutStats,
    ShadowStats,
    TrafficPolicy,
    TrafficReport,
    TrafficSplit,
    VersionLabel,
)
from yyai_kernel.types.specs import (
    Color,
    Combine,
    Encoding,
    Feature,
    FeatureKind,
    FileRole,
    FileSpec,
    ImageSpec,
    InputKind,
    InputSpec,
    Layout,
    MemberSource,
    MemberSpec,
    OutputKind,
    OutputSpec,
    TableSpec,
)
from yyai_kernel.types.status import (
    DefaultReason,
    DefaultWhy,
    InstallOptions,
    InstallResult,
    ModelError,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    ResidencyStatus,
    ServerStatus,
    StoreProblemInfo,
    StoreProblemKind,
    VersionState,
    VersionStatus,
)

__all__ = [
    "BUNDLED_KEYS",
    "COLD_START_HEADER",
    "COMBINED_OUTPUT",
    "LABEL_PATTERN",
    "LABEL_RE",
    "MAX_VERSION_DIGITS",
    "NAME_PATTERN",
    "NAME_RE",
    "POLICY_EXAMPLE",
    "SPLITS",
    "STICKY_HEADER",
    "BundledFiles",
    "CanaryStats",
    "Choice",
    "Color",
    "Combine",
    "DefaultReason",
    "DefaultWhy",
    "Disagreement",
    "Encoding",
    "ExplainMethod",
    "Explanation",
    "Feature",
    "FeatureKind",
    "FileRole",
    "FileSpec",
    "Given",
    "ImageSpec",
    "InputKind",
    "InputReference",
    "InputSpec",
    "InstallOptions",
    "InstallResult",
    "JsonView",
    "Latency",
    "Layout",
    "MemberSource",
    "MemberSpec",
    "ModelError",
    "ModelRef",
    "ModelRemoved",
    "ModelStatus",
    "ModelSummary",
    "Numbers",
    "OutputKind",
    "OutputSpec",
    "Prediction",
    "Records",
    "ResidencyStatus",
    "RolloutStats",
    "ServerStatus",
    "ShadowStats",
    "StoreProblemInfo",
    "StoreProblemKind",
    "TableSpec",
    "TrafficPolicy",
    "TrafficReport",
    "TrafficSplit",
    "VersionDescription",
    "VersionLabel",
    "VersionState",
    "VersionStatus",
    "check_explain",
    "check_label",
    "check_name",
    "explain_method_for",
    "parse_version",
    "parse_version_ref",
    "require_version",
]
