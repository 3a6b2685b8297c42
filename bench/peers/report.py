"""Turns compare.py's results.json into the peer sections of bench/RESULTS.md and the two PNG plots.

Three sections: ``## Peer comparison`` (REST: v2 infer and yyai's /predictions, with the plots),
``## Peer comparison over v2 gRPC`` (the servers that speak gRPC, with tritonclient.grpc) and
``## yyai on Ray Serve`` (yyai serve, the same API on Ray Serve, and plain Ray Serve: the hop's cost).

Runs in yyai's venv (matplotlib). Kept apart from the measuring code so that
``compare.py --report-only`` can redraw a report without measuring again.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from resultsfile import replace_section  # bench/, on the path when compare.py runs

LABELS = {
    "yyai": "yyai (batching)",
    "yyai-workers2": "yyai --workers 2 (batching)",
    "yyai-nobatch": "yyai (no batching)",
    "yyai-ray": "yyai on Ray Serve",
    "flask": "Flask + model.predict()",
    "pytriton": "PyTriton (Triton)",
    "mlserver": "MLServer",
    "torchserve": "TorchServe",
    "ray": "Ray Serve",
}
MODELS = ["digits", "cnn64"]
REF = "yyai"


def cells(results: dict, server: str, model: str, endpoint: str, conc: int) -> list[dict]:
    rounds = results["servers"].get(server, {}).get("rounds", [])
    return [c for r in rounds for c in r.get("cells", [])
            if c["model"] == model and c["endpoint"] == endpoint and c["concurrency"] == conc]


def agg(results, server, model, endpoint, conc) -> dict | None:
    """Across rounds: mean req/s with min-max, p50/p99 (pooled exact at c=1, mean of rounds otherwise)."""
    got = cells(results, server, model, endpoint, conc)
    if not got:
        return None
    rps = [c["rps"] for c in got]
    out = {"rps": statistics.mean(rps), "rps_min": min(rps), "rps_max": max(rps), "n": len(got),
           "errors": sum(c["errors"] for c in got), "requests": sum(c["requests"] for c in got),
           "client_cpu": statistics.mean(c["client_cpu"] for c in got),
           "server_cpu": statistics.mean(c.get("server_cpu", float("nan")) for c in got)}
    if all("latencies_ms" in c for c in got):  # a client that recorded every request
        pooled = sorted(v for c in got for v in c["latencies_ms"])
        out["p50_ms"], out["p99_ms"] = _pct(pooled, 50), _pct(pooled, 99)
        out["latencies_ms"] = pooled
    else:
        out["p50_ms"] = statistics.mean(c["p50_ms"] for c in got)
        out["p99_ms"] = statistics.mean(c["p99_ms"] for c in got)
    return out


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q * len(ordered) / 100))
    return ordered[min(rank, len(ordered)) - 1]


def server_stat(results, server, key) -> tuple[float, float, float] | None:
    vals = [r[key] for r in results["servers"].get(server, {}).get("rounds", []) if key in r]
    if not vals:
        return None
    return statistics.mean(vals), min(vals), max(vals)


def loads(results, server) -> str:
    """The 1-minute load averages taken after each round of a server."""
    vals = [r["loadavg_1m_after"] for r in results["servers"][server]["rounds"] if "loadavg_1m_after" in r]
    return ", ".join(f"{v:.1f}" for v in vals) or "-"


def fmt(v, digits=0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}"


def ratio(v, ref) -> str:
    if v is None or ref is None or not ref or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v / ref:.2f}x"


def spread(mean, lo, hi, digits=0) -> str:
    if mean is None:
        return "-"
    if hi - lo < 10 ** -digits:
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ({fmt(lo, digits)}–{fmt(hi, digits)})"


def servers_in(results) -> list[str]:
    order = list(LABELS)
    return [s for s in order if s in results["servers"]]


def rows_for(results) -> list[tuple[str, str, str]]:
    """(server, endpoint, label) rows: yyai's /predictions rows follow its v2 rows."""
    rows = []
    for s in servers_in(results):
        rows.append((s, "v2", LABELS[s] + (" v2 infer" if s.startswith("yyai") else "")))
        if s.startswith("yyai") and any(c["endpoint"] == "predictions" for r in results["servers"][s]["rounds"]
                                        for c in r.get("cells", [])):
            rows.append((s, "predictions", LABELS[s] + " /predictions (PNG)"))
    return rows


def write(results: dict, md_path: Path, plots_dir: Path) -> None:
    plots_dir.mkdir(parents=True, exist_ok=True)
    draw_cdf(results, plots_dir / "latency_cdf_c1.png")
    draw_throughput(results, plots_dir / "throughput_vs_concurrency.png")
    replace_section(markdown(results, md_path, plots_dir), md_path)
    write_grpc(results, md_path)
    write_ray(results, md_path)


def write_grpc(results: dict, md_path: Path) -> None:
    """The gRPC section, when the run measured gRPC at all."""
    if grpc_servers(results):
        replace_section(grpc_markdown(results), md_path)


def write_ray(results: dict, md_path: Path) -> None:
    """The Ray section, when the run measured yyai on Ray Serve."""
    if "yyai-ray" in results["servers"]:
        replace_section(ray_markdown(results), md_path)


def latency_table(results: dict, model: str, rows: list[tuple[str, str, str]], ref_endpoint: str) -> list[str]:
    """One model's latency and throughput table; ratios to yyai (batching) on ``ref_endpoint``."""
    lines = ["| server | c=1 p50 ms | c=1 p99 ms | c=1 req/s | c=8 req/s | c=8 p99 ms | c=32 req/s | "
             "c=32 p99 ms | errors | c=8 req/s vs yyai | c=32 req/s vs yyai | c=1 p50 vs yyai |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref = {c: agg(results, REF, model, ref_endpoint, c) for c in (1, 8, 32)}
    for server, endpoint, label in rows:
        a = {c: agg(results, server, model, endpoint, c) for c in (1, 8, 32)}
        if not any(a.values()):
            continue

        def g(c, k, d=0, a=a):
            return fmt(a[c][k], d) if a[c] else "-"

        def t(c, a=a):
            return spread(a[c]["rps"], a[c]["rps_min"], a[c]["rps_max"]) if a[c] else "-"

        def vs(c, k, a=a):
            return ratio(a[c][k] if a[c] else None, ref[c][k] if ref[c] else None)

        lines.append(f"| {label} | {g(1, 'p50_ms', 2)} | {g(1, 'p99_ms', 2)} | {g(1, 'rps')} | {t(8)} | "
                     f"{g(8, 'p99_ms', 1)} | {t(32)} | {g(32, 'p99_ms', 1)} | "
                     f"{sum(x['errors'] for x in a.values() if x)} | {vs(8, 'rps')} | {vs(32, 'rps')} | "
                     f"{vs(1, 'p50_ms')} |")
    return lines


def cpu_table(results: dict, rows: list[tuple[str, str, str]]) -> list[str]:
    """Client and server CPU at each concurrency, and the server's CPU per request at c=32."""
    lines = ["| server | model | client c=1 | client c=8 | client c=32 | server c=1 | server c=8 | server c=32 | "
             "server CPU ms per request at c=32 |", "|---|---|---|---|---|---|---|---|---|"]
    for server, endpoint, label in rows:
        for model in MODELS:
            a = {c: agg(results, server, model, endpoint, c) for c in (1, 8, 32)}
            if not any(a.values()):
                continue
            cl = " | ".join(f"{a[c]['client_cpu']:.0%}" if a[c] else "-" for c in (1, 8, 32))
            sv = " | ".join(f"{a[c]['server_cpu']:.0%}" if a[c] else "-" for c in (1, 8, 32))
            per = fmt(1000 * a[32]["server_cpu"] / a[32]["rps"], 2) if a[32] and a[32]["rps"] else "-"
            lines.append(f"| {label} | {model} | {cl} | {sv} | {per} |")
    return lines


def grpc_servers(results: dict) -> list[str]:
    return [s for s in servers_in(results)
            if any(c["endpoint"] == "grpc" for r in results["servers"][s]["rounds"] for c in r.get("cells", []))]


def grpc_markdown(results: dict) -> str:
    """``## Peer comparison over v2 gRPC``: one table per model, and the CPU of client and server."""
    m, st = results["machine"], results["settings"]
    servers = grpc_servers(results)
    lines = [
        "## Peer comparison over v2 gRPC", "",
        f"Measured {results['date']} by `bench/compare.py --endpoints grpc` (part of `make bench`) on "
        f"{m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']} "
        f"(load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}).", "",
        "The servers that speak the v2 gRPC protocol (`inference.GRPCInferenceService`), with the same models "
        f"and settings as the REST comparison above, one after another in {st['rounds']} round(s); each cell ran "
        f"{st['seconds']} s after a {st['warmup']} s warm-up. The client is tritonclient.grpc's asyncio client "
        "in its own process: `c` tasks share one channel (HTTP/2 streams) and call `ModelInfer` back to back "
        "with one sample (the REST body's tensor, sent as `raw_input_contents`); percentiles are exact over "
        "every request of every round; req/s counts successful calls, mean of the rounds (min–max in brackets). "
        "yyai serves gRPC from the `yyai serve` process (`--grpc-port`, token in the metadata), PyTriton is "
        "Triton's own gRPC server, MLServer its gRPC server. Ratios are to yyai over gRPC.", "",
        "| component | version |", "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in results["versions"].items()]
    rows = [(server, "grpc", LABELS[server]) for server in servers]
    for model in MODELS:
        lines += ["", f"### `{model}` over gRPC", ""] + latency_table(results, model, rows, "grpc")
    lines += ["", "CPU use as a fraction of one core, mean over cells (client: the tritonclient.grpc process; "
              "server: its whole process tree). On these cores, what the client takes the server cannot use.", ""]
    lines += cpu_table(results, rows)
    failures = [(s, r) for s in servers for r in results["servers"][s]["rounds"] if r.get("error")]
    if failures:
        lines += ["", "Servers that failed:", ""] + [f"- {LABELS[s]}, round {r['round']}: `{r['error']}`"
                                                     for s, r in failures]
    return "\n".join(lines) + "\n"


def markdown(results: dict, md_path: Path, plots_dir: Path) -> str:
    m = results["machine"]
    st = results["settings"]
    rel = Path("plots")
    lines = [
        "## Peer comparison",
        "",
        f"Measured {results['date']} by `make bench` (`bench/compare.py`"
        + (", `--quick`" if results.get("quick") else "") + ") on "
        f"{m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}"
        f" (load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}).",
        "",
        "Every server runs the same two Keras models from the same `.keras` files, on 127.0.0.1, one after "
        f"another in {st['rounds']} round(s) (A B A B ...); each cell ran {st['seconds']} s after a "
        f"{st['warmup']} s warm-up. Every request carries one sample: the same v2 JSON tensor body for every server "
        "(TorchServe gets it on its `/predictions` route, parsed by the handler), and yyai's `/predictions` rows "
        "post the PNG of the same input instead (decode + preprocessing included). "
        "Concurrency 1: an aiohttp client in its own process, exact percentiles over every request (all rounds "
        "pooled). Concurrency 8 and 32: `wrk -t1` with a Lua script; req/s counts only 2xx replies and is the "
        "mean of the rounds (min–max in brackets); p99 is wrk's. Peak RSS is the sum over the server's whole "
        "process tree (psutil, sampled every 250 ms). Cold start: process start to the first successful "
        "prediction of both models. Ratios are to yyai (batching on, v2 infer): above 1 means more than yyai.",
        "",
        "Models: " + "; ".join(f"`{k}` {v['params']:,} parameters, input {'x'.join(map(str, v['input']))}"
                               for k, v in results["models"].items()) + ".",
        "",
        "Peer settings: PyTriton binds each model with `max_batch_size` 32 and the dynamic batcher "
        "(`max_queue_delay_microseconds` 2000), started with `LD_LIBRARY_PATH` at the venv interpreter's "
        "LIBDIR; MLServer runs a custom `MLModel` with adaptive batching (32, 0.002 s) and `parallel_workers` 0; "
        "TorchServe runs a custom handler, batch 32, max delay 2 ms, one worker per model; Ray Serve runs one "
        "deployment per model with `@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)` and "
        "`RAY_worker_niceness=0`. All peers except the Flask baseline call the model through a traced "
        "`tf.function`, as yyai does; Flask calls `model.predict()` for every request, as the original "
        "service did.",
        "",
        "### Versions",
        "",
        "| component | version |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in results["versions"].items()]
    for model in MODELS:
        lines += ["", f"### `{model}`: latency and throughput", ""]
        lines += latency_table(results, model, rows_for(results), "v2")
        ref = {c: agg(results, REF, model, "v2", c) for c in (1, 8, 32)}
        lim = (results.get("limit") or {}).get(model)
        if lim:
            b1, best = lim["batch1"], lim["best"]
            lines.append(f"| limit: traced call in-process, batch 1 | {fmt(b1['p50_ms'], 3)} | "
                         f"{fmt(b1['p99_ms'], 3)} | {fmt(b1['samples_per_s'])} | | | | | | | | |")
            lines.append(f"| limit: best batch ({best['batch']}) | | | | {fmt(best['samples_per_s'])} samples/s "
                         f"| | | | | {ratio(best['samples_per_s'], ref[8]['rps'] if ref[8] else None)} | | |")
    lines += ["", "### Load generator and server CPU", "",
              "CPU use as a fraction of one core, mean over cells (client: the wrk or aiohttp process; server: its "
              "whole process tree). On 2 cores, what the client takes the server cannot use.", ""]
    lines += cpu_table(results, rows_for(results))
    # memory + cold start
    lines += ["", "### Memory and cold start", "",
              "Load average (1 min) after each server's cells is shown to judge how quiet the machine was "
              "(2 cores: a load well above 2 means other work shared them).", "",
              "| server | peak RSS MB | vs yyai | cold start s | vs yyai | load average after |",
              "|---|---|---|---|---|---|"]
    rss_ref, cold_ref = server_stat(results, REF, "peak_rss_mb"), server_stat(results, REF, "cold_start_s")
    for s in servers_in(results):
        rss, cold = server_stat(results, s, "peak_rss_mb"), server_stat(results, s, "cold_start_s")
        rss_vs = ratio(rss[0] if rss else None, rss_ref[0] if rss_ref else None)
        cold_vs = ratio(cold[0] if cold else None, cold_ref[0] if cold_ref else None)
        lines.append(f"| {LABELS[s]} | {spread(*rss) if rss else '-'} | {rss_vs} | "
                     f"{spread(*cold, digits=1) if cold else '-'} | {cold_vs} | {loads(results, s)} |")
    # failures
    failures = [(s, r) for s in servers_in(results) for r in results["servers"][s]["rounds"] if r.get("error")]
    if failures:
        lines += ["", "### Servers that failed", ""]
        for s, r in failures:
            lines.append(f"- {LABELS[s]}, round {r['round']}: `{r['error']}`")
    # reload
    if results.get("reload"):
        lines += ["", "### Reload under load", "",
                  f"16 aiohttp clients on `{st.get('reload_model', 'digits')}` for {st['reload_seconds']} s while the "
                  f"model is reloaded every {st['reload_every']:.0f} s (each server's own way, below); steady-state "
                  f"p99 from {st['steady_seconds']} s of the same load without reloads. \"During\" means requests "
                  "started between a reload's call and 0.5 s after it returned. Then reloads back to back, up to "
                  f"{st['reloads']} in all or {st['reload_cap_s']} s, and the RSS of the process tree after them.", "",
                  "| server | how | reloads | failed / requests | p99 steady ms | p99 during reloads ms | "
                  "p99 between reloads ms | reload s (median) | RSS before MB | RSS after N reloads MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        how = {"yyai": "`POST /models/{m}/reload`", "yyai-workers2": "`POST /models/{m}/reload` (both workers)",
               "mlserver": "`POST /v2/repository/models/{m}/load`",
               "pytriton": "Triton `POST /v2/repository/models/{m}/load`",
               "torchserve": "register other version, set-default, unregister old"}
        for s, rec in results["reload"].items():
            if rec.get("error"):
                lines.append(f"| {LABELS[s]} | {how.get(s, '')} | failed: `{rec['error'][:200]}` | | | | | | | |")
                continue
            u = rec.get("under_reload", {})
            errs = f" ({u.get('reload_error_count')} reload calls failed)" if u.get("reload_error_count") else ""
            lines.append(
                f"| {LABELS[s]} | {how.get(s, '')} | {u.get('reloads')}{errs} | {u.get('failed')} / {u.get('requests')}"
                f"{' (HTTP status ' + ', '.join(map(str, u.get('failed_statuses'))) + ')' if u.get('failed') else ''}"
                f"{' ' + '; '.join(f'`{e}`' for e in u.get('failed_errors', [])) if u.get('failed_errors') else ''} | "
                f"{fmt(rec['steady']['p99_ms'], 1)} | {fmt(u.get('p99_during_ms'), 1)} | "
                f"{fmt(u.get('p99_outside_ms'), 1)} | "
                f"{fmt(u.get('reload_s_median'), 2)} | {fmt(rec.get('rss_before_mb'))} | "
                f"{fmt(rec.get('rss_after_mb'))} (N = {rec.get('reloads_total')}) |")
        notes = {
            "pytriton": "PyTriton: Triton's repository API is behind PyTriton's access token (403 without it), and "
                        "with PyTriton's default remote model store there is nothing to reload from (\"failed to poll "
                        "from model repository\"); the bench therefore runs PyTriton with a local model store. "
                        "Then a load of the served model fails (HTTP 400 or 500): the new Python-backend stub "
                        "cannot bind the model's data socket while the old one still holds it (\"OSError: [Errno 98] "
                        "Address already in use\" in the server log, then EOFError in `initialize`). Triton keeps "
                        "the old instance serving, so no request fails, but no reload happens: PyTriton has no "
                        "working hot reload.",
            "torchserve": "TorchServe: no in-place reload; the swap registers the other version (a new Python worker "
                          "that imports TensorFlow: seconds), makes it the default and unregisters the old one. "
                          "Requests still queued for the old version when it is unregistered get no reply: those are "
                          "the failures (client timeout after 30 s).",
            "mlserver": "MLServer: a load of a loaded model loads the new instance and then swaps it in.",
        }
        for s_, text in notes.items():
            if s_ in results["reload"]:
                lines += ["", text]
    lines += gaps(results)
    lines += ["", "### Plots", "",
              f"![latency CDF at concurrency 1]({rel / 'latency_cdf_c1.png'})", "",
              f"![throughput against concurrency]({rel / 'throughput_vs_concurrency.png'})", ""]
    return "\n".join(lines) + "\n"


def _legend_below(fig, axes) -> None:
    """One legend for both panels, under them, so that no line hides behind it."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=4, fontsize=8, frameon=False)


def draw_cdf(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(12, 5.5))
    for ax, model in zip(axes, MODELS):
        for server, endpoint, label in rows_for(results):
            a = agg(results, server, model, endpoint, 1)
            if not a or not a.get("latencies_ms"):
                continue
            xs = a["latencies_ms"]
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.plot(xs, ys, label=label, linestyle="--" if endpoint == "predictions" else "-")
        lim = (results.get("limit") or {}).get(model)
        if lim:
            ax.axvline(lim["batch1"]["p50_ms"], color="grey", linestyle=":", label="limit: traced call, batch 1")
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{model}: latency CDF at concurrency 1")
        ax.grid(True, which="both", alpha=0.3)
    _legend_below(fig, axes)
    fig.suptitle(f"Same Keras model, loopback, {results['machine']['nproc']} cores ({results['date'][:10]})")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_throughput(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MODELS), figsize=(12, 5.5))
    for ax, model in zip(axes, MODELS):
        for server, endpoint, label in rows_for(results):
            pts = [(c, agg(results, server, model, endpoint, c)) for c in (1, 8, 32)]
            pts = [(c, a) for c, a in pts if a]
            if not pts:
                continue
            ax.errorbar([c for c, _ in pts], [a["rps"] for _, a in pts],
                        yerr=[[a["rps"] - a["rps_min"] for _, a in pts], [a["rps_max"] - a["rps"] for _, a in pts]],
                        marker="o", capsize=3, label=label, linestyle="--" if endpoint == "predictions" else "-")
        lim = (results.get("limit") or {}).get(model)
        if lim:
            ax.axhline(lim["best"]["samples_per_s"], color="grey", linestyle=":",
                       label=f"limit: traced call, batch {lim['best']['batch']}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks([1, 8, 32], ["1", "8", "32"])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests/s (log)")
        ax.set_title(f"{model}: throughput against concurrency")
        ax.grid(True, which="both", alpha=0.3)
    _legend_below(fig, axes)
    fig.suptitle(f"Same Keras model, loopback, {results['machine']['nproc']} cores ({results['date'][:10]})")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: Why yyai trails a peer, by kind of figure; measured facts behind each are in the tables above.
WHY = {
    "throughput": (
        "Per-request work in Python, under one GIL per process. The inference routes are lean Tornado handlers "
        "(no jupyter_server machinery: one token check, one float32 conversion with one finiteness check, the "
        "reply encoded once), and `--workers 2` puts the second core to work; what is left per request is "
        "Tornado's HTTP/1.1 parsing and writing, the v2 JSON codec, and the hop to the batcher thread and back, "
        "all in Python. Triton's HTTP front end is C++ and TorchServe's is Java (Netty): only batched tensors "
        "cross into Python, so their server CPU per request is a fraction of yyai's (CPU table), and on 2 cores "
        "that CPU is the ceiling. yyai freezes the import-time heap (`gc.freeze`) before loading models, so "
        "full garbage collections no longer stall the requests in flight."),
    "json": (
        "The cnn64 request is 12,288 floats as JSON (96 KB). yyai parses it with orjson and makes one float32 "
        "array with one finiteness check; the JSON text itself is the cost, which a C++ front end pays outside "
        "the GIL."),
    "latency": (
        "At concurrency 1 a request crosses Tornado's HTTP parsing, the lean handler and two threads (the "
        "IOLoop and the batcher), all in Python; compare the `yyai (no batching)` rows."),
    "rss": (
        "The yyai process tree holds the Voila/jupyter_server app and TensorFlow with both models (and each "
        "worker of `--workers N` its own copy); the Flask baseline and MLServer carry less around the same "
        "TensorFlow."),
    "cold": (
        "yyai starts Voila and jupyter_server, imports TensorFlow (about 2.5 s here), then verifies "
        "(checksums), loads and warms every archive (tracing its function) before it answers. The rfc3987 "
        "grammar build that once cost about 5 s of CPU at start is kept out of it."),
}

#: What would close each gap (for the issue's closing note).
CLOSE = {
    "throughput": "fewer Python steps per request (an HTTP/1.1 parser in C, such as an ASGI server, is the next "
                  "big one), more workers where there are cores, and past one machine the Ray Serve or KServe "
                  "scale-out.",
    "json": "the binary tensor extension (which yyai supports, and tritonclient uses by default) for big "
            "tensors, and `--workers 2` (see its rows).",
    "latency": "an HTTP parser in C; the batcher already dispatches a lone request at once.",
    "rss": "nothing cheap: the dashboard app is part of yyai's one-process design.",
    "cold": "warm up lazily after the first model answers, and import TensorFlow while Voila starts.",
}


def gaps(results: dict) -> list[str]:
    """Where yyai (batching, v2) is behind a peer by more than 10%: the figure, the factor, and why."""
    found: dict[str, list[str]] = {}
    peers = [s for s in servers_in(results) if not s.startswith("yyai")]
    for model in MODELS:
        ref = {c: agg(results, REF, model, "v2", c) for c in (1, 8, 32)}
        for peer in peers:
            a = {c: agg(results, peer, model, "v2", c) for c in (1, 8, 32)}
            for c in (8, 32):
                if a[c] and ref[c] and a[c]["rps"] > 1.1 * ref[c]["rps"]:
                    kind = "json" if model == "cnn64" else "throughput"
                    found.setdefault(kind, []).append(
                        f"`{model}` c={c}: {LABELS[peer]} {a[c]['rps']:,.0f} req/s against yyai {ref[c]['rps']:,.0f} "
                        f"({a[c]['rps'] / ref[c]['rps']:.2f}x)")
                if a[c] and ref[c] and a[c]["p99_ms"] < ref[c]["p99_ms"] / 1.1:
                    found.setdefault("throughput", []).append(
                        f"`{model}` c={c} p99: {LABELS[peer]} {a[c]['p99_ms']:.1f} ms "
                        f"against yyai {ref[c]['p99_ms']:.1f} ms")
            if a[1] and ref[1] and a[1]["p50_ms"] < ref[1]["p50_ms"] / 1.1:
                found.setdefault("latency", []).append(
                    f"`{model}` c=1 p50: {LABELS[peer]} {a[1]['p50_ms']:.2f} ms against yyai {ref[1]['p50_ms']:.2f} ms")
    for key, kind in (("peak_rss_mb", "rss"), ("cold_start_s", "cold")):
        ref = server_stat(results, REF, key)
        for peer in peers:
            v = server_stat(results, peer, key)
            if v and ref and v[0] < ref[0] / 1.1:
                unit = "MB" if kind == "rss" else "s"
                found.setdefault(kind, []).append(
                    f"{LABELS[peer]} {v[0]:,.1f} {unit} against yyai {ref[0]:,.1f} {unit}")
    if not found:
        return ["", "### Where yyai is behind", "", "Nowhere by more than 10% in this run."]
    lines = ["", "### Where yyai is behind", ""]
    for kind in ("throughput", "json", "latency", "rss", "cold"):
        if kind in found:
            lines.append(f"- {'; '.join(found[kind])}.")
            lines.append(f"  Why: {WHY[kind]}")
            lines.append(f"  What would close it: {CLOSE[kind]}")
    return lines


RAY_SERVERS = ["yyai", "yyai-ray", "ray"]


def ray_markdown(results: dict) -> str:
    """``## yyai on Ray Serve``: yyai serve, yyai on Ray and plain Ray Serve side by side; the hop's cost."""
    m, st = results["machine"], results["settings"]
    servers = [s for s in RAY_SERVERS if s in results["servers"]]
    lines = [
        "## yyai on Ray Serve", "",
        f"Measured {results['date']} by `bench/compare.py --peers yyai,yyai-ray,ray` (part of `make bench`) on "
        f"{m['cpu']}, {m['nproc']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']} "
        f"(load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; the machine is shared "
        "with other jobs, so the spread is wide).", "",
        "The same models, bodies, clients and settings as the peer comparison, one server after another in "
        f"{st['rounds']} round(s), {st['seconds']} s a cell after a {st['warmup']} s warm-up. *yyai on Ray Serve* "
        "is `yyai ray --replicas 1` (it starts its own local Ray on 2 CPUs): Serve's HTTP proxy and one replica "
        "that serves the REST API over the data plane and runs both archives (multiplexed by "
        "`name:version:sha256`, `@serve.batch` of 32 rows, 2 ms). *Ray Serve* is the plain peer: the proxy and "
        "one deployment per model, `@serve.batch` 32, 2 ms. Both cross the same processes (proxy, replica); yyai "
        "on Ray adds yyai's work in the replica (token, version resolution, v2 parsing and encoding); *yyai* is "
        "`yyai serve`, one process. Ratios are to yyai serve.", "",
        "| component | version |", "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in results["versions"].items() if k.startswith("yyai venv") or "ray" in k]
    rows = [(s, "v2", LABELS[s] + (" v2 infer" if s.startswith("yyai") else "")) for s in servers]
    rows += [(s, "predictions", LABELS[s] + " /predictions (PNG)") for s in servers if s.startswith("yyai")]
    for model in MODELS:
        lines += ["", f"### `{model}` on Ray", ""] + latency_table(results, model, rows, "v2")
    lines += ["", "### What yyai adds on Ray", "",
              "Median latency at concurrency 1 (one request at a time, so no batching and no queueing): "
              "yyai on Ray Serve minus plain Ray Serve is yyai's own request handling; "
              "minus yyai serve is what moving the same API onto Ray costs.", "",
              "| model | yyai serve p50 ms | yyai on Ray p50 ms | Ray Serve p50 ms | on Ray − Ray Serve | "
              "on Ray − yyai serve | c=32 req/s on Ray vs yyai serve |", "|---|---|---|---|---|---|---|"]
    for model in MODELS:
        p50 = {s: (agg(results, s, model, "v2", 1) or {}).get("p50_ms") for s in RAY_SERVERS}
        top = {s: (agg(results, s, model, "v2", 32) or {}).get("rps") for s in RAY_SERVERS}

        def minus(a, b, p50=p50):
            return f"{p50[a] - p50[b]:+.2f} ms" if p50[a] is not None and p50[b] is not None else "-"

        lines.append(f"| {model} | {fmt(p50['yyai'], 2)} | {fmt(p50['yyai-ray'], 2)} | {fmt(p50['ray'], 2)} | "
                     f"{minus('yyai-ray', 'ray')} | {minus('yyai-ray', 'yyai')} | "
                     f"{ratio(top['yyai-ray'], top['yyai'])} |")
    lines += ["", "| server | cold start s | peak RSS MB | load average after each round |", "|---|---|---|---|"]
    for s in servers:
        cold, rss = server_stat(results, s, "cold_start_s"), server_stat(results, s, "peak_rss_mb")
        lines.append(f"| {LABELS[s]} | {spread(*cold, 1) if cold else '-'} | {spread(*rss) if rss else '-'} | "
                     f"{loads(results, s)} |")
    failures = [(s, r) for s in servers for r in results["servers"][s]["rounds"] if r.get("error")]
    if failures:
        lines += ["", "Servers that failed:", ""] + [f"- {LABELS[s]}, round {r['round']}: `{r['error']}`"
                                                     for s, r in failures]
    return "\n".join(lines) + "\n"
