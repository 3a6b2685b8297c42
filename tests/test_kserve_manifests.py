"""deploy/kserve: the manifests load into the KServe SDK's models, and the image runs their args.

The SDK runs in a subprocess (tests/kserve_sdk.py says why: it cannot share a process
with tritonclient.grpc). Every manifest must survive the SDK round trip unchanged, so a
field the SDK does not know, a misspelling or a wrong type fails here and not in a cluster.
The Dockerfile is parsed with dockerfile-parse: its ENTRYPOINT plus the runtime's args
must be the `yyai serve` command line, and its CMD the same args.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

from yyai_kernel.cli import app as cli_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kserve"
MANIFESTS = [DEPLOY / "runtime.yaml", DEPLOY / "inferenceservice.yaml"]


def _sdk_round_trip(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kserve_sdk.py"), *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _runtime() -> dict:
    [runtime] = _documents(DEPLOY / "runtime.yaml")
    return runtime


def _container() -> dict:
    [container] = _runtime()["spec"]["containers"]
    return container


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _dockerfile() -> dict[str, list[str]]:
    """Each Dockerfile instruction's values, in order (ENTRYPOINT and CMD as exec-form lists)."""
    instructions: dict[str, list] = {}
    for item in DockerfileParser(str(DEPLOY / "Dockerfile")).structure:
        value = item["value"]
        if item["instruction"] in ("ENTRYPOINT", "CMD"):
            value = json.loads(value)  # exec form: a shell form would not pass args through
        instructions.setdefault(item["instruction"], []).append(value)
    return instructions


def test_manifests_round_trip_through_the_kserve_sdk_unchanged():
    result = _sdk_round_trip(*MANIFESTS)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    for path in MANIFESTS:
        assert loaded[str(path)] == _documents(path), path.name


def test_an_unknown_field_fails_the_sdk_check(tmp_path):
    [service] = _documents(DEPLOY / "inferenceservice.yaml")
    service["spec"]["predictor"]["model"]["storageURI"] = service["spec"]["predictor"]["model"].pop("storageUri")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(service))
    result = _sdk_round_trip(typo)
    assert result.returncode == 1
    assert "InferenceService.spec.predictor.model: V1beta1ModelSpec has no field storageURI" in result.stderr

    runtime = _runtime()
    runtime["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "8080"  # IntOrString: allowed
    runtime["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] = "10"  # int field: refused
    wrong_type = tmp_path / "wrong-type.yaml"
    wrong_type.write_text(yaml.safe_dump(runtime))
    result = _sdk_round_trip(wrong_type)
    assert result.returncode == 1 and "livenessProbe.periodSeconds: expected int" in result.stderr


def test_the_runtime_serves_yyar_over_v2_rest_and_grpc():
    runtime, container = _runtime(), _container()
    assert runtime["kind"] == "ClusterServingRuntime"
    assert [f["name"] for f in runtime["spec"]["supportedModelFormats"]] == ["yyar"]
    assert runtime["spec"]["protocolVersions"] == ["v2", "grpc-v2"]
    assert container["name"] == "kserve-container"
    args = container["args"]
    assert _arg(args, "--store") == "/mnt/models" and _arg(args, "--host") == "0.0.0.0"
    assert "--public-health" in args  # probes carry no token
    port = int(_arg(args, "--port"))
    assert port == 8080 and int(_arg(args, "--grpc-port")) == 8081
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    [token] = [e for e in container["env"] if e["name"] == "YYAI_TOKEN"]
    assert set(token["valueFrom"]) == {"secretKeyRef"} and "--token" not in args and "--no-token" not in args


def test_the_inference_service_uses_the_runtime_and_its_ports():
    [service] = _documents(DEPLOY / "inferenceservice.yaml")
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "yyar" and model["runtime"] == _runtime()["metadata"]["name"]
    assert model["protocolVersion"] in _runtime()["spec"]["protocolVersions"]
    args = _container()["args"]
    ports = {p["name"]: p["containerPort"] for p in model["ports"]}
    assert ports == {"http1": int(_arg(args, "--port")), "grpc": int(_arg(args, "--grpc-port"))}
    assert next(iter(ports)) == "http1"  # KServe serves the first port as the Service's port 80


def test_the_dockerfile_entrypoint_runs_the_runtimes_args():
    dockerfile, container = _dockerfile(), _container()
    assert "command" not in container  # so Kubernetes runs the image's ENTRYPOINT with `args`
    [entrypoint] = dockerfile["ENTRYPOINT"]
    [cmd] = dockerfile["CMD"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["yyai"] and "yyai" in scripts
    assert container["args"][0] in {command.name for command in cli_app.registered_commands}
    assert cmd == container["args"]  # `docker run IMAGE` serves as the KServe pod does
    args = container["args"]
    assert dockerfile["EXPOSE"] == [f"{_arg(args, '--port')} {_arg(args, '--grpc-port')}"]


def test_the_image_runs_as_the_runtimes_non_root_user():
    dockerfile, security = _dockerfile(), _container()["securityContext"]
    assert dockerfile["USER"] == [str(security["runAsUser"])] and security["runAsNonRoot"] is True


def test_what_the_dockerfile_copies_exists_and_is_in_the_build_context():
    allowed = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for copy in _dockerfile()["COPY"]:
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert f"!{source}" in allowed or f"!{source}/" in allowed, f"{source} is left out of the build context"
