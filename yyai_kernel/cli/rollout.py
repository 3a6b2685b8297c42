"""`yyai label` (version labels) and `yyai traffic` (canary and shadow), on a server or a store.

Like `yyai default`: with ``--server`` the change is live when the command returns (the
server loads the versions first and persists the change); on a store folder it is
written to the state file for the next start (a running server over that folder picks
it up at its next rescan). A label goes wherever a version does: ``yyai predict
digits:stable``, ``POST /predictions/digits/stable``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from yyai_kernel.cli import CHANGE, app, fail
from yyai_kernel.cli.target import (
    CHANGE_SERVER_HELP,
    STORE_HELP,
    TOKEN_HELP,
    on_server,
    store_path,
)
from yyai_kernel.errors import InvalidInputError, YyaiError
from yyai_kernel.hints import Hint, Step
from yyai_kernel.types import TrafficPolicy, TrafficReport, check_label, check_name


@app.command("label", rich_help_panel=CHANGE)
def label_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model."),
    label: str | None = typer.Argument(None, help="The label, such as stable (omit to list the model's labels)."),
    version: int | None = typer.Argument(None, min=1, help="The version the label names (omit to show it)."),
    delete: bool = typer.Option(False, "--delete", help="Forget the label."),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
) -> None:
    """Set, show, list or delete a model's version labels.

    Examples:

        yyai label digits stable 2 --server http://127.0.0.1:8866 --token T

        yyai label digits --store model_archives

        yyai label digits canary --delete --store model_archives
    """
    if (delete or version is not None) and label is None:
        fail("name the LABEL to set or delete")
    if delete and version is not None:
        fail("give a VERSION to point the label at, or --delete (not both)")
    try:
        check_name(name)
        if label is not None:
            check_label(label)
        labels = _labels_on_server(name, label, version, delete, server, token) if on_server(ctx, server, store) \
            else _labels_on_store(name, label, version, delete, store_path(store))
    except YyaiError as exc:
        fail(exc)
    if label is not None and not delete:
        labels = {label: labels[label]}
    for key, number in sorted(labels.items()):
        typer.echo(f"{name}@{key} -> v{number}")
    if not labels:
        typer.echo(f"{name} has no labels")


def _labels_on_server(name, label, version, delete, url, token) -> dict[str, int]:
    from yyai_kernel.client import YyaiClient

    with YyaiClient(url, token) as client:
        if delete:
            client.delete_label(name, label)
        elif version is not None:
            client.set_label(name, label, version)
        elif label is not None:
            client.label(name, label)  # 404 for an unknown label
        return client.labels(name)


def _labels_on_store(name, label, version, delete, root: Path) -> dict[str, int]:
    from yyai_kernel.store.store import ModelStore

    store = ModelStore(root)
    store.versions(name)  # 404 for an unknown model
    if delete:
        store.delete_label(name, label)
    elif version is not None:
        store.set_label(name, label, version)
    elif label is not None:
        store.label(name, label)
    return store.labels(name)


@app.command("traffic", rich_help_panel=CHANGE)
def traffic_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model."),
    canary: str | None = typer.Option(None, "--canary", help="VERSION:PERCENT answered by the canary, such as 3:10."),
    shadow: str | None = typer.Option(None, "--shadow", help="VERSION:PERCENT also run on the shadow, such as 3:100."),
    sticky: bool = typer.Option(False, "--sticky", help="Place requests by their X-Yyai-Sticky key (or v2 id)."),
    clear: bool = typer.Option(False, "--clear", help="Clear the policy: the default answers everything."),
    promote: bool = typer.Option(False, "--promote", help="Make the candidate the default and clear the policy."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    store: Path | None = typer.Option(None, "--store", help=STORE_HELP),
    server: str | None = typer.Option(None, "--server", envvar="YYAI_URL", help=CHANGE_SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="YYAI_TOKEN", help=TOKEN_HELP),
) -> None:
    """Show or set a model's canary and shadow split of the requests that name no version.

    Examples:

        yyai traffic digits --canary 3:10 --sticky --server http://127.0.0.1:8866 --token T

        yyai traffic digits --shadow 3:100 --store model_archives

        yyai traffic digits --server http://127.0.0.1:8866 --token T     (the policy and its figures)
    """
    if sum([clear, promote, bool(canary or shadow)]) > 1:
        fail("give --canary/--shadow, --clear or --promote, one at a time")
    try:
        policy = _policy(canary, shadow, sticky) if canary or shadow else None
        action = "clear" if clear else "promote" if promote else "set" if policy else "show"
        report = _traffic_on_server(name, action, policy, server, token) if on_server(ctx, server, store) \
            else _traffic_on_store(name, action, policy, store_path(store))
    except YyaiError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    for line in describe_report(report):
        typer.echo(line)


def _policy(canary: str | None, shadow: str | None, sticky: bool) -> TrafficPolicy:
    doc: dict = {"sticky": sticky}
    for side, text in (("canary", canary), ("shadow", shadow)):
        if text is not None:
            version, colon, percent = text.partition(":")
            try:
                doc[side] = {"version": int(version), "percent": float(percent)}
            except ValueError:
                raise InvalidInputError(f"--{side} takes VERSION:PERCENT, such as 3:10, not {text!r}.") from None
            if not colon:
                raise InvalidInputError(f"--{side} takes VERSION:PERCENT, such as 3:10, not {text!r}.")
    return TrafficPolicy.parse(doc)


def _traffic_on_server(name, action, policy, url, token) -> TrafficReport:
    from yyai_kernel.client import YyaiClient

    with YyaiClient(url, token) as client:
        if action == "set":
            client.set_traffic(name, policy)
        elif action == "clear":
            client.clear_traffic(name)
        elif action == "promote":
            client.promote(name)
        return client.traffic_report(name)


def _traffic_on_store(name, action, policy, root: Path) -> TrafficReport:
    from yyai_kernel.store.store import ModelStore

    store = ModelStore(root)
    store.versions(name)  # 404 for an unknown model
    if action == "set":
        policy.check_default(name, store.default_version(name))
        store.set_traffic(name, policy)
    elif action == "clear":
        store.set_traffic(name, None)
    elif action == "promote":
        current = store.traffic(name)
        candidate = (current.canary or current.shadow) if current is not None else None
        if candidate is None:
            raise InvalidInputError(f"Model {name!r} has no canary or shadow to promote",
                                    hint=(Hint(Step.SET_TRAFFIC, name), Hint(Step.PIN, name)))
        store.pin(name, candidate.version)
        store.set_traffic(name, None)
    return TrafficReport(name, store.traffic(name), None)


def describe_report(report: TrafficReport) -> list[str]:
    """A traffic report for people: the policy, then the running figures when a server sent them."""
    policy, figures = report.policy, report.rollout
    if policy is None:
        return [f"{report.name}: no traffic policy; the default answers every request"]
    sides = [f"{side} v{split.version} {split.percent:g}%" for side in ("canary", "shadow")
             if (split := getattr(policy, side)) is not None]
    lines = [f"{report.name}: " + ", ".join(sides) + (" (sticky)" if policy.sticky else "")]
    if figures is not None and figures.canary is not None:
        c = figures.canary
        lines.append(f"  canary: {c.requests} of {figures.default_requests} default requests, {c.fallbacks} fallbacks")
    if figures is not None and figures.shadow is not None:
        s = figures.shadow
        agreement = "no comparison yet" if s.agreement is None else f"agreement {s.agreement:.3f}"
        lines.append(f"  shadow: {agreement} over {s.rows_compared} rows, {s.errors} errors, {s.dropped} dropped; "
                     f"p50 {s.latency_ms.p50} ms (real replies {s.real_latency_ms.p50} ms)")
    return lines
