"""Soak: many clients against ``yyai serve`` while models are reloaded, uploaded and swapped.

``make soak`` runs this. It is a long-running check, not a unit test: it starts a real
``yyai serve`` on 127.0.0.1 over a temporary store holding copies of the bundled demo
archives (``model_archives/*.yyar``) and, for ``--duration`` seconds (default 300):

- ``--clients`` threads (default 16) send predictions to two models, ``digits`` and
  ``colorfulness``: raw PNG/JPEG bodies and multipart uploads to ``/predictions/{m}[/{v}]``
  (``?raw=true``), and v2 ``/v2/models/{m}[/versions/{v}]/infer`` with JSON tensors or the
  binary tensor extension. Half the requests name a version, half take the default.
- One manager thread per model cycles, every ``--interval`` seconds, through: a forced
  reload (``POST /models/{m}/reload``), an upload of a new version (``POST /models``: a
  re-pack of the bundled archive under the next version number; for ``digits`` the re-packs
  alternate between member subsets, so versions give different answers), a default swap
  (``PUT /models/{m}/default`` to another live version) and retiring old uploads (taken out
  of the clients' choice, then ``DELETE ...?purge=true`` ``--grace`` seconds later, so only
  versions nobody asks for any more are deleted).

Every successful reply is checked against reference outputs computed before the soak, in
this process, with the same archive code (``ArchiveRuntime`` on a batch of one) and anchored
to ``model_archives/samples/expected.json``. A reply must name the version asked for, or,
without a version, a version that was the default at some moment while the request ran (a
swap or upload overlapping the request makes either side legitimate); its values must
match that version's reference. Anything else is a wrong answer.

The report (markdown, printed; ``--write-results`` also puts it into the ``## Soak``
section of ``bench/RESULTS.md``) gives requests served, 5xx (must be 0), wrong answers
(must be 0), other replies by status, management operations, p50/p99 latency, and the
server's RSS at the start, along the way and at the end. The exit status is 1 when any
reply was a 5xx, any answer was wrong, a connection failed or the server died.

Usage::

    python bench/soak.py                      # 5 minutes, 16 clients
    python bench/soak.py --duration 20        # a quick run
    python bench/soak.py --write-results --note "machine shared with other work"
    python bench/soak.py --server-args="--workers 2" --write-results   # its own section
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from serving import RunningServer, start_server  # noqa: E402  (tests/serving.py)

ARCHIVES = ROOT / "model_archives"
SAMPLES = ARCHIVES / "samples"
EXPECTED = SAMPLES / "expected.json"
MODELS = ("digits", "colorfulness")
BUNDLED = {"digits": [1, 2], "colorfulness": [1]}
# digits re-packs cycle through these member subsets of digits-2 (None: every member)
DIGITS_VARIANTS = (None, ["cnn_a"], ["mlp", "cnn_wide"])
RTOL = ATOL = 1e-4
KEEP_UPLOADS = 2  # uploaded versions per model that stay in the clients' choice


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- archives and reference outputs ------------------------------------------------------


@dataclass
class Template:
    """An archive's manifest and every listed file, to re-pack under new version numbers."""

    manifest: dict
    blobs: dict[str, bytes]

    @classmethod
    def read(cls, path: Path) -> Template:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("MANIFEST.json"))
            blobs = {e["path"]: zf.read(e["path"]) for e in manifest["members"] + manifest.get("files", [])}
        return cls(manifest, blobs)

    def repack(self, version: int, members: list[str] | None = None) -> bytes:
        """A valid .yyar of this archive as ``version``, keeping only ``members`` if given."""
        data = json.loads(json.dumps(self.manifest))
        data["version"] = version
        data["created"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if members is not None:
            data["members"] = [m for m in data["members"] if m["name"] in members]
        which = "every member" if members is None else "+".join(members)
        data["description"] = f"soak re-pack of {self.manifest['name']} v{self.manifest['version']} ({which})"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("MANIFEST.json", json.dumps(data, indent=2))
            for entry in data["members"] + data.get("files", []):
                zf.writestr(entry["path"], self.blobs[entry["path"]])
        return buffer.getvalue()


@dataclass
class Reference:
    """One archive content's outputs on each sample: members and combined, float arrays."""

    members: dict[str, dict[str, np.ndarray]]  # sample -> member -> [K]
    combined: dict[str, np.ndarray | None]  # sample -> [K] or None


def compute_reference(path: Path, samples: dict[str, bytes]) -> Reference:
    """Run the archive in this process, one sample at a time, with yyai's own code."""
    from yyai_kernel.runtime.images import preprocess
    from yyai_kernel.runtime.runtime import ArchiveRuntime

    runtime = ArchiveRuntime.load(path, warmup_sizes=[1])
    spec = runtime.manifest.input
    members, combined = {}, {}
    for name, data in samples.items():
        out = runtime(preprocess(data, spec)[None])
        members[name] = {m: np.asarray(a[0], dtype=np.float64) for m, a in out.members.items()}
        combined[name] = None if out.combined is None else np.asarray(out.combined[0], dtype=np.float64)
    return Reference(members, combined)


def check_expected(ref: Reference, expected: dict, label: str) -> None:
    """Anchor: the in-process reference equals the bundled expected.json (rounded to 1e-6)."""
    for sample, want in expected.items():
        got = ref.combined[sample]
        if got is None or not np.allclose(got, want["combined"], rtol=1e-6, atol=2e-6):
            raise SystemExit(f"reference of {label} on {sample} differs from expected.json")
        for member, values in want["members"].items():
            if not np.allclose(ref.members[sample][member], values, rtol=1e-6, atol=2e-6):
                raise SystemExit(f"reference of {label}/{member} on {sample} differs from expected.json")


def close(got, want) -> bool:
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=RTOL, atol=ATOL))


# --- shared state of the soak ------------------------------------------------------------


@dataclass
class ModelState:
    """What the clients may ask for, and which versions were the default when."""

    name: str
    samples: dict[str, bytes]
    inputs: dict[str, np.ndarray]  # sample -> preprocessed input (v2 requests)
    refs: dict[int, Reference] = field(default_factory=dict)  # version -> its reference
    pool: list[int] = field(default_factory=list)  # versions clients may name
    uploaded: list[int] = field(default_factory=list)  # uploaded versions still in the pool
    retired: dict[int, float] = field(default_factory=dict)  # version -> when it left the pool
    history: list[tuple[float, int]] = field(default_factory=list)  # (time, default from then on)
    changes: list[Change] = field(default_factory=list)  # management calls that may move the default
    next_version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def default(self) -> int:
        return self.history[-1][1]

    def acceptable_defaults(self, t0: float, t1: float) -> set[int]:
        """Every version that was (or was becoming) the default between t0 and t1."""
        with self.lock:
            before = [v for t, v in self.history if t <= t0]
            found = {before[-1] if before else self.history[0][1]}
            for change in self.changes:
                if change.begin <= t1 and change.end >= t0:
                    found |= change.versions
            return found

    def begin_change(self, *versions: int) -> Change:
        """Open a window, before the call is sent, in which the default may become any of ``versions``."""
        change = Change(time.monotonic(), float("inf"), {self.default, *versions})
        with self.lock:
            self.changes.append(change)
        return change

    def end_change(self, change: Change, reply) -> None:
        """Close the window with the default the reply reports (model status ``default``)."""
        new = self.default
        if reply is not None and reply.status_code in (200, 201):
            body = reply.json()
            new = int((body.get("model") or body)["default"])
        with self.lock:
            change.versions.add(new)
            change.end = time.monotonic()
            if new != self.default:
                self.history.append((change.end, new))


@dataclass
class Change:
    """A management call's window: from before it was sent until its reply was read."""

    begin: float
    end: float
    versions: set


@dataclass
class Tally:
    """Counts and latencies, shared by every client thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    served: Counter = field(default_factory=Counter)  # (kind, model) -> 200 replies
    statuses: Counter = field(default_factory=Counter)  # status -> count (predictions)
    latencies: dict = field(default_factory=lambda: defaultdict(list))  # kind -> seconds
    wrong: int = 0
    five_xx: int = 0
    connection_errors: int = 0
    examples: list = field(default_factory=list)  # first few problems, for the report
    default_served: Counter = field(default_factory=Counter)  # requests without a version, by model
    images: int = 0
    mgmt: Counter = field(default_factory=Counter)  # (action, status) -> count
    mgmt_latencies: dict = field(default_factory=lambda: defaultdict(list))
    client_ends: list = field(default_factory=list)  # when each client thread stopped

    def problem(self, kind: str, text: str) -> None:
        with self.lock:
            if kind == "wrong":
                self.wrong += 1
            elif kind == "5xx":
                self.five_xx += 1
            elif kind == "connection":
                self.connection_errors += 1
            if len(self.examples) < 12:
                self.examples.append(f"{kind}: {text[:400]}")
            seen = self.wrong + self.five_xx + self.connection_errors
        if seen <= 20 or seen % 100 == 0:
            log(f"PROBLEM #{seen} {kind}: {text[:300]}")


# --- clients -------------------------------------------------------------------------------


def v2_body(inputs: list[np.ndarray], binary: bool) -> tuple[bytes, dict]:
    """A v2 infer request for a batch: JSON data, or the binary tensor extension."""
    x = np.stack(inputs).astype("<f4")
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    if not binary:
        tensor["data"] = x.reshape(-1).tolist()
        return json.dumps({"inputs": [tensor]}).encode(), {"Content-Type": "application/json"}
    raw = x.tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw, {"Content-Type": "application/octet-stream",
                          "Inference-Header-Content-Length": str(len(header))}


def check_rows(state: ModelState, version: int, chosen: list[str], reply_rows) -> str | None:
    """Compare a reply's per-sample outputs with the version's reference; None when right."""
    ref = state.refs.get(version)
    if ref is None:
        return f"{state.name} v{version} is not a version the soak created"
    if len(reply_rows) != len(chosen):
        return f"{len(reply_rows)} rows for {len(chosen)} inputs"
    for sample, (members, combined) in zip(chosen, reply_rows):
        want_members = ref.members[sample]
        if set(members) != set(want_members):
            return f"{state.name} v{version} {sample}: members {sorted(members)} != {sorted(want_members)}"
        for m, values in members.items():
            if not close(values, want_members[m]):
                return (f"{state.name} v{version} {sample} member {m}: "
                        f"{np.round(values, 5)} != {np.round(want_members[m], 5)}")
        want = ref.combined[sample]
        if (combined is None) != (want is None) or (want is not None and not close(combined, want)):
            return f"{state.name} v{version} {sample} combined: {combined} != {want}"
    return None


def client(index: int, server: RunningServer, states: dict[str, ModelState], tally: Tally,
           deadline: float, seed: int) -> None:
    """Send predictions until the deadline, checking every answer."""
    rng = random.Random(seed * 1000 + index)
    session = requests.Session()
    session.headers.update(server.headers)
    while time.monotonic() < deadline:
        state = states[rng.choice(MODELS)]
        with state.lock:
            pool = list(state.pool)
        version = rng.choice(pool) if rng.random() < 0.5 else None
        kind = "predictions" if rng.random() < 0.5 else "v2"
        count = 1 if rng.random() < 0.75 else rng.randint(2, 3)
        chosen = [rng.choice(list(state.samples)) for _ in range(count)]
        where = "" if version is None else f"/{version}"
        if kind == "predictions":
            url = f"{server.url}/predictions/{state.name}{where}?raw=true"
            if count == 1:
                media = "image/jpeg" if chosen[0].endswith(".jpg") else "image/png"
                kwargs = {"data": state.samples[chosen[0]], "headers": {"Content-Type": media}}
            else:
                kwargs = {"files": [("images", (s, state.samples[s])) for s in chosen]}
        else:
            where = "" if version is None else f"/versions/{version}"
            url = f"{server.url}/v2/models/{state.name}{where}/infer"
            body, headers = v2_body([state.inputs[s] for s in chosen], binary=rng.random() < 0.5)
            kwargs = {"data": body, "headers": headers}
        t0 = time.monotonic()
        try:
            reply = session.post(url, timeout=60, **kwargs)
        except requests.RequestException as error:
            tally.problem("connection", f"POST {url}: {error}")
            continue
        t1 = time.monotonic()
        with tally.lock:
            tally.statuses[reply.status_code] += 1
        if reply.status_code != 200:
            if reply.status_code >= 500:
                tally.problem("5xx", f"POST {url} -> {reply.status_code} {reply.text}")
            continue
        wrong = judge(state, kind, version, chosen, reply, t0, t1)
        if wrong:
            tally.problem("wrong", f"POST {url}: {wrong}")
            continue
        with tally.lock:
            tally.served[(kind, state.name)] += 1
            tally.latencies[kind].append(t1 - t0)
            tally.images += count
            if version is None:
                tally.default_served[state.name] += 1
    session.close()
    with tally.lock:
        tally.client_ends.append(time.monotonic())


def judge(state: ModelState, kind: str, version: int | None, chosen: list[str], reply, t0: float,
          t1: float) -> str | None:
    """Why a 200 reply is wrong (wrong version or wrong values), or None."""
    try:
        body = reply.json()
        if kind == "predictions":
            served = int(body["version"])
            rows = [(r["raw"]["members"], r["raw"]["combined"]) for r in body["predictions"]]
        else:
            served = int(body["model_version"])
            outputs = {o["name"]: np.asarray(o["data"], dtype=np.float64).reshape(o["shape"]) for o in body["outputs"]}
            combined = outputs.pop("output", None)
            rows = [({m: a[i] for m, a in outputs.items()}, None if combined is None else combined[i])
                    for i in range(len(chosen))]
    except (ValueError, KeyError, TypeError, IndexError) as error:
        return f"unreadable reply ({type(error).__name__}: {error}): {reply.text[:200]}"
    if version is not None and served != version:
        return f"asked for v{version}, the reply says v{served}"
    if version is None:
        allowed = state.acceptable_defaults(t0, t1)
        if served not in allowed:
            return f"default request served by v{served}; the default was one of {sorted(allowed)}"
    return check_rows(state, served, chosen, rows)


# --- management ----------------------------------------------------------------------------


def manage(server: RunningServer, state: ModelState, template: Template, tally: Tally, deadline: float,
           interval: float, grace: float, seed: int) -> None:
    """Cycle reload -> upload -> default swap -> retire until the deadline, one every ``interval`` s."""
    rng = random.Random(seed + len(state.name))
    session = requests.Session()
    session.headers.update(server.headers)
    actions = ("reload", "upload", "swap", "retire")
    step = 0
    while time.monotonic() < deadline:
        action = actions[step % len(actions)]
        step += 1
        started = time.monotonic()
        try:
            status = ACTIONS[action](server, session, state, template, rng, grace)
        except requests.RequestException as error:
            tally.problem("connection", f"{action} {state.name}: {error}")
            status = "connection"
        if status is not None:
            with tally.lock:
                tally.mgmt[(action, status)] += 1
                tally.mgmt_latencies[action].append(time.monotonic() - started)
            if isinstance(status, int) and status >= 500:
                tally.problem("5xx", f"{action} {state.name} -> {status}")
            elif status not in (200, 201):
                log(f"{action} {state.name} answered {status}")
        pause = interval - (time.monotonic() - started)
        if pause > 0:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    session.close()


def call(state: ModelState, candidates: tuple, method, url: str, **kwargs):
    """A management call inside a default-change window (closed even when the call fails)."""
    change = state.begin_change(*candidates)
    reply = None
    try:
        reply = method(url, timeout=300, **kwargs)
        return reply
    finally:
        state.end_change(change, reply)


def do_reload(server, session, state, template, rng, grace):
    reply = call(state, (), session.post, f"{server.url}/models/{state.name}/reload")
    if reply.status_code >= 400:
        log(f"reload {state.name}: {reply.status_code} {reply.text[:200]}")
    return reply.status_code


def do_upload(server, session, state, template, rng, grace):
    with state.lock:
        version = state.next_version
        state.next_version += 1
    if state.name == "digits":
        members = DIGITS_VARIANTS[version % len(DIGITS_VARIANTS)]
        state.refs[version] = state.refs[-(version % len(DIGITS_VARIANTS)) - 1]
    else:
        members = None
        state.refs[version] = state.refs[-1]
    body = template.repack(version, members)
    reply = call(state, (version,), session.post, f"{server.url}/models", data=body,
                 headers={"Content-Type": "application/octet-stream"})
    if reply.status_code == 201:
        with state.lock:
            state.pool.append(version)
            state.uploaded.append(version)
    else:
        log(f"upload {state.name} v{version}: {reply.status_code} {reply.text[:200]}")
    return reply.status_code


def do_swap(server, session, state, template, rng, grace):
    with state.lock:
        old = state.default
        choices = [v for v in state.pool if v != old]
    if not choices:
        return None
    target = rng.choice(choices)
    reply = call(state, (target,), session.put, f"{server.url}/models/{state.name}/default", json={"version": target})
    if reply.status_code != 200:
        log(f"swap {state.name} -> v{target}: {reply.status_code} {reply.text[:200]}")
    return reply.status_code


def do_retire(server, session, state, template, rng, grace):
    """Take the oldest extra upload out of the clients' choice; delete those retired long enough."""
    now = time.monotonic()
    with state.lock:
        if len(state.uploaded) > KEEP_UPLOADS:
            candidates = [v for v in state.uploaded[:-KEEP_UPLOADS] if v != state.default]
            if candidates:
                state.uploaded.remove(candidates[0])
                state.pool.remove(candidates[0])
                state.retired[candidates[0]] = now
        due = [v for v, t in state.retired.items() if now - t >= grace and v != state.default]
    status = None
    for version in due:
        reply = call(state, (), session.delete, f"{server.url}/models/{state.name}/versions/{version}?purge=true")
        status = reply.status_code
        if status == 200:
            with state.lock:
                state.retired.pop(version, None)
        else:
            log(f"delete {state.name} v{version}: {status} {reply.text[:200]}")
    return status


ACTIONS = {"reload": do_reload, "upload": do_upload, "swap": do_swap, "retire": do_retire}


# --- the run ---------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """The server process's RSS every ``every`` seconds, as (elapsed s, bytes); with ``tree``, summed
    over the process and its descendants (``--workers``: the supervisor, the model host, the front
    ends and the dashboard kernels)."""

    def __init__(self, pid: int, every: float = 2.0, tree: bool = False):
        super().__init__(name="rss", daemon=True)
        self.process = psutil.Process(pid)
        self.tree = tree
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()

    def rss(self) -> int:
        if not self.tree:
            return self.process.memory_info().rss
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # a process that ended meanwhile (a kernel, a restarting front end)
                continue
        return total

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.samples.append((time.monotonic() - self.t0, self.rss()))
            except psutil.Error:
                return
            self.stop_event.wait(self.every)


def prepare(work: Path) -> tuple[Path, dict[str, ModelState], dict[str, Template]]:
    """Copy the bundled archives into a fresh store; compute every reference in-process."""
    store = work / "store"
    store.mkdir(parents=True)
    for path in sorted(ARCHIVES.glob("*.yyar")):
        shutil.copyfile(path, store / path.name)
    expected = json.loads(EXPECTED.read_text())
    from yyai_kernel.runtime.images import preprocess
    from yyai_kernel.types import InputSpec

    states, templates = {}, {}
    for name in MODELS:
        sample_names = sorted(expected[f"{name}-1.yyar"])
        samples = {s: (SAMPLES / s).read_bytes() for s in sample_names}
        top = max(BUNDLED[name])
        templates[name] = Template.read(ARCHIVES / f"{name}-{top}.yyar")
        spec = InputSpec.from_json(templates[name].manifest["input"]).filled()
        inputs = {s: preprocess(data, spec) for s, data in samples.items()}
        state = ModelState(name, samples, inputs, next_version=top + 1)
        for version in BUNDLED[name]:
            ref = compute_reference(ARCHIVES / f"{name}-{version}.yyar", samples)
            check_expected(ref, expected[f"{name}-{version}.yyar"], f"{name}-{version}")
            state.refs[version] = ref
        variants = DIGITS_VARIANTS if name == "digits" else (None,)
        for i, members in enumerate(variants):  # references of re-packs live under keys -1, -2, ...
            path = work / f"variant-{name}-{i}.yyar"
            path.write_bytes(templates[name].repack(999, members))
            state.refs[-i - 1] = compute_reference(path, samples)
        state.pool = list(BUNDLED[name])
        states[name] = state
    return store, states, templates


def percentile_ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.1f}" if values else "-"


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{rev}{' (with uncommitted changes)' if dirty else ''}" if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def report(args, tally: Tally, rss: RssSampler, rss_start: int, rss_end: int, info: dict) -> str:
    """The markdown report: the ``## Soak`` section of bench/RESULTS.md."""
    served = sum(tally.served.values())
    total = sum(tally.statuses.values())
    other = {s: n for s, n in sorted(tally.statuses.items()) if s != 200 and s < 500}
    wall = info["wall_s"]
    clients_s = info["clients_s"]
    samples = rss.samples
    marks = []
    for fraction in (0.25, 0.5, 0.75):
        target = info["soak_start_rel"] + fraction * wall
        near = min(samples, key=lambda s: abs(s[0] - target)) if samples else None
        if near:
            marks.append(mib(near[1]))
    peak = max((s[1] for s in samples), default=rss_end)
    mgmt_rows = []
    for action in ("reload", "upload", "swap", "retire"):
        by_status = {s: n for (a, s), n in sorted(tally.mgmt.items(), key=str) if a == action}
        times = tally.mgmt_latencies.get(action, [])
        label = {"retire": "delete (`DELETE .../versions/{v}?purge=true`)",
                 "reload": "reload (`POST /models/{m}/reload`)",
                 "upload": "upload (`POST /models`)", "swap": "default swap (`PUT /models/{m}/default`)"}[action]
        mgmt_rows.append(
            f"| {label} | {sum(by_status.values())} | "
            f"{', '.join(f'{s}: {n}' for s, n in by_status.items()) or '-'} | "
            f"{percentile_ms(times, 50)} | {max(times) * 1000 if times else 0:.0f} |"
        )
    ok = tally.five_xx == 0 and tally.wrong == 0 and tally.connection_errors == 0 and info["server_alive"]
    by_kind = {k: sum(n for (kk, _), n in tally.served.items() if kk == k) for k in ("predictions", "v2")}
    by_model = {m: sum(n for (_, mm), n in tally.served.items() if mm == m) for m in MODELS}
    lines = [
        "## Soak" + (f" (`{args.server_args}`)" if args.server_args else ""),
        "",
        f"`make soak` (`bench/soak.py --duration {args.duration:g} --clients {args.clients}`): "
        f"{args.clients} client threads for {clients_s:.0f} s against one "
        f"`yyai serve{' ' + args.server_args if args.server_args else ''}` on 127.0.0.1 "
        "(batching on, token auth), over a temporary store holding copies of the bundled demo archives. "
        "Predictions on `digits` and `colorfulness` (half `/predictions` with PNG/JPEG bodies or "
        "multipart uploads, half v2 `infer` with JSON or binary tensors; half naming a version, half "
        "taking the default; 1-3 images each) while, for each model, one manager thread cycles every "
        f"{args.interval:g} s through a forced reload, an upload of a re-packed new version (for `digits` "
        "alternating between member subsets of v2, so versions answer differently), a default swap to "
        f"another live version, and deleting uploads retired from the clients' choice {args.grace:g} s "
        "earlier. Every 200 reply is checked against reference outputs computed before the soak with "
        "the same archive code in the soak's own process (anchored to `model_archives/samples/expected.json`), "
        "for the version the reply names; that version must be the one asked for or, without a version, "
        "one that was the default at some moment during the request.",
        "",
        f"Date {info['date']}, commit {info['revision']}; {info['machine']}. "
        f"Load average before / after: {info['load_before']} / {info['load_after']}."
        + (f" {args.note}" if args.note else ""),
        "",
        "| | |",
        "|---|---|",
        f"| result | **{'PASS' if ok else 'FAIL'}** |",
        f"| requests sent | {total} |",
        f"| requests served (200, checked) | {served} ({served / clients_s:.1f}/s; {tally.images} images; "
        f"`/predictions` {by_kind['predictions']}, v2 {by_kind['v2']}; "
        + ", ".join(f"`{m}` {n}" for m, n in by_model.items())
        + f"; {sum(tally.default_served.values())} without a version) |",
        f"| 5xx | **{tally.five_xx}** |",
        f"| wrong answers | **{tally.wrong}** |",
        f"| connection errors | {tally.connection_errors} |",
        f"| other replies by status | {', '.join(f'{s}: {n}' for s, n in other.items()) or 'none'} |",
        f"| latency p50 / p99, `/predictions` | {percentile_ms(tally.latencies['predictions'], 50)} / "
        f"{percentile_ms(tally.latencies['predictions'], 99)} ms |",
        f"| latency p50 / p99, v2 infer | {percentile_ms(tally.latencies['v2'], 50)} / "
        f"{percentile_ms(tally.latencies['v2'], 99)} ms |",
        f"| server RSS start / 25% / 50% / 75% / end (peak) | {mib(rss_start)} / {' / '.join(marks)} / "
        f"{mib(rss_end)} MiB ({mib(peak)} MiB) |",
        f"| versions loaded at start / end | {info['loaded_start']} / {info['loaded_end']} |",
        f"| versions uploaded / deleted | {info['uploaded']} / {info['deleted']} |",
        f"| store after the soak | {info['store_after']} |",
        f"| server log | {info['log_summary']} |",
        f"| server stop (SIGTERM) | exit code {info['exit_code']} |",
        "",
        "| management operation | count | replies by status | p50 ms | max ms |",
        "|---|---|---|---|---|",
        *mgmt_rows,
    ]
    if tally.examples:
        lines += ["", "First problems seen:", ""] + [f"- `{e}`" for e in tally.examples]
    return "\n".join(lines) + "\n"


ACCESS_LINE = re.compile(r"ERROR \| (\{$|\d{3} (GET|POST|PUT|DELETE|HEAD) )")
TF_LINE = re.compile(r"^[EWI]\d{4} ")  # TensorFlow's C++ log (e.g. "failed call to cuInit" without a GPU)


def summarize_log(text: str) -> str:
    """Tracebacks, and error lines other than jupyter_server's access log of 5xx replies."""
    errors = [line for line in text.splitlines()
              if "ERROR" in line and not ACCESS_LINE.search(line) and not TF_LINE.match(line)]
    five_xx = [line for line in text.splitlines() if re.search(r"ERROR \| 5\d\d (POST|PUT|DELETE) ", line)]
    return (f"{text.count('Traceback')} tracebacks, {len(errors)} error lines, "
            f"{len(five_xx)} 5xx replies to POST/PUT/DELETE in the access log")


def loaded_versions(server: RunningServer) -> str:
    models = server.get("/models", timeout=60).json()
    return "; ".join(f"{m['name']} {m['loaded']}" for m in models)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--clients", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between management actions per model")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between retiring a version and deleting it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-results", action="store_true", help="put the report into bench/RESULTS.md (## Soak)")
    parser.add_argument("--note", default="", help="a sentence added to the report, e.g. about the machine")
    parser.add_argument("--server-args", default="",
                        help="extra `yyai serve` arguments, such as '--workers 2' (its own RESULTS.md section; "
                             "the RSS is then the whole process tree's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (store, server log)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop the server on the way out, even from `&` or a timeout
        signal.signal(sig, lambda number, frame: sys.exit(128 + number))
    work = Path(tempfile.mkdtemp(prefix="yyai-soak-"))
    server = None
    exit_code = None
    try:
        log(f"preparing {work}: store copy and reference outputs")
        store, states, templates = prepare(work)
        log("starting yyai serve")
        server = start_server(store, work / "server", args=shlex.split(args.server_args))
        for name, state in states.items():  # every version the clients may name must be loaded
            for version in state.pool:
                reply = server.post(f"/models/{name}/load", json={"version": version}, timeout=300)
                if reply.status_code != 200:
                    raise SystemExit(f"loading {name} v{version} failed: {reply.status_code} {reply.text}")
            state.history.append((0.0, int(server.get(f"/models/{name}").json()["default"])))
        loaded_start = loaded_versions(server)
        rss = RssSampler(server.proc.pid, tree=bool(args.server_args))
        rss_start = rss.rss()
        load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        tally = Tally()
        log(f"soak: {args.clients} clients for {args.duration:g} s; server RSS {mib(rss_start)} MiB")
        soak_start = time.monotonic()
        deadline = soak_start + args.duration
        rss.start()
        threads = [threading.Thread(target=client, name=f"client-{i}", daemon=True,
                                    args=(i, server, states, tally, deadline, args.seed))
                   for i in range(args.clients)]
        threads += [threading.Thread(target=manage, name=f"manage-{name}", daemon=True,
                                     args=(server, states[name], templates[name], tally, deadline,
                                           args.interval, args.grace, args.seed))
                    for name in MODELS]
        for thread in threads:
            thread.start()
        next_progress = soak_start + 30
        while any(t.is_alive() for t in threads):
            time.sleep(1.0)
            if time.monotonic() > deadline + 600:
                raise SystemExit("threads did not finish within 10 minutes of the deadline")
            if time.monotonic() >= next_progress and time.monotonic() < deadline:
                next_progress += 30
                elapsed = time.monotonic() - soak_start
                with tally.lock:
                    log(f"{elapsed:.0f} s: {sum(tally.served.values())} served, {tally.five_xx} 5xx, "
                        f"{tally.wrong} wrong, RSS {mib(rss.samples[-1][1]) if rss.samples else '?'} MiB")
        wall = time.monotonic() - soak_start  # the managers finish their last operation after the deadline
        rss.stop_event.set()
        alive = server.proc.poll() is None
        rss_end = rss.rss() if alive else 0
        loaded_end = loaded_versions(server) if alive else "(server died)"
        status = server.get("/models/_status").json() if alive else {}
        load_after = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        uploaded = sum(n for (a, s), n in tally.mgmt.items() if a == "upload" and s == 201)
        deleted = sum(n for (a, s), n in tally.mgmt.items() if a == "retire" and s == 200)
        archives = sorted(p.name for p in store.iterdir() if p.suffix == ".yyar")
        temps = [p.name for p in store.iterdir() if p.name.startswith(".tmp-")]
        store_after = (f"{len(archives)} archives, {len(temps)} temporary files, "
                       f"{len(status.get('problems', []))} problems, state error {status.get('state_error')}")
        exit_code = server.stop()
        log_summary = summarize_log(server.log())
        info = {
            "date": _dt.datetime.now(_dt.UTC).date().isoformat(), "revision": git_revision(),
            "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), "
                       f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}",
            "load_before": load_before, "load_after": load_after, "wall_s": wall,
            "clients_s": max(tally.client_ends) - soak_start if tally.client_ends else wall,
            "soak_start_rel": soak_start - rss.t0, "server_alive": alive, "loaded_start": loaded_start,
            "loaded_end": loaded_end, "uploaded": uploaded, "deleted": deleted, "store_after": store_after,
            "log_summary": log_summary, "exit_code": exit_code,
        }
        markdown = report(args, tally, rss, rss_start, rss_end, info)
        print(markdown)
        if args.write_results:
            from resultsfile import replace_section

            replace_section(markdown)
            log("wrote the ## Soak section of bench/RESULTS.md")
        failed = tally.five_xx or tally.wrong or tally.connection_errors or not alive or exit_code != 0
        return 1 if failed else 0
    finally:
        if server is not None and server.proc.poll() is None:
            server.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
