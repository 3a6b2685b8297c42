"""Load Kubernetes manifests into the KServe SDK's model classes, strictly; run as a script.

    python tests/kserve_sdk.py FILE.yaml...   # prints {"FILE": [round-tripped documents]}

Why a script: the KServe SDK and tritonclient.grpc cannot share a process. Both register
the protobuf package ``inference`` (``grpc_predict_v2.proto``, ``grpc_service.proto``) in
protobuf's default descriptor pool, and the second import fails with "duplicate symbol".
The tests import tritonclient.grpc, so they run the SDK in a process of its own.

Why not ``kserve.ApiClient().deserialize``: it looks class names up in ``kserve.models``
only, which lacks the Kubernetes types (``V1ObjectMeta``, ``V1Container``...), and like
every generated client it drops keys it does not know. This loader walks the same
``openapi_types`` / ``attribute_map`` tables, finds each class in ``kserve.models`` or
``kubernetes.client.models``, builds the SDK's objects (their constructors validate),
and refuses any key the model does not declare, naming its path. The round trip through
``ApiClient.sanitize_for_serialization`` goes back to the caller for comparison.
"""

from __future__ import annotations

import json
import re
import sys

import kserve
import kubernetes.client.models as k8s_models
import yaml
from kserve import models as kserve_models

CLASSES = {"ClusterServingRuntime": "V1alpha1ClusterServingRuntime", "InferenceService": "V1beta1InferenceService"}
NATIVE = {"str": str, "int": int, "bool": bool, "float": (int, float)}


class UnknownField(ValueError):
    """A manifest key that the SDK's model does not declare."""


def load(data, type_name: str, path: str):
    """Deserialize ``data`` as the SDK type named ``type_name``; refuse undeclared keys."""
    if data is None:
        return None
    # kserve's models write list[X] and dict(str, X); kubernetes' write List[X] and Dict[str, X].
    if match := re.fullmatch(r"[lL]ist\[(.*)\]", type_name):
        _expect(data, list, path)
        return [load(item, match.group(1), f"{path}[{i}]") for i, item in enumerate(data)]
    if match := re.fullmatch(r"dict\(str, (.*)\)|Dict\[str, (.*)\]", type_name):
        _expect(data, dict, path)
        value_type = match.group(1) or match.group(2)
        return {key: load(value, value_type, f"{path}.{key}") for key, value in data.items()}
    if type_name == "object":
        return data
    if type_name in NATIVE:
        _expect(data, NATIVE[type_name], path)
        return data
    cls = getattr(kserve_models, type_name, None) or getattr(k8s_models, type_name)
    _expect(data, dict, path)
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise UnknownField(f"{path}: {cls.__name__} has no field {', '.join(unknown)}")
    kwargs = {by_key[key]: load(value, cls.openapi_types[by_key[key]], f"{path}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def _expect(data, kind, path: str) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(data, kinds) or (isinstance(data, bool) and bool not in kinds):
        raise UnknownField(f"{path}: expected {' or '.join(k.__name__ for k in kinds)}, found {data!r}")


def round_trip(document: dict) -> dict:
    """The document loaded into its SDK class and serialized back."""
    type_name = CLASSES[document["kind"]]
    return kserve.ApiClient().sanitize_for_serialization(load(document, type_name, document["kind"]))


def main(paths: list[str]) -> int:
    out = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            try:
                out[path] = [round_trip(doc) for doc in yaml.safe_load_all(f) if doc]
            except UnknownField as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
