"""The Rollout tab: version labels, the canary and shadow sliders, live agreement, promote or roll back.

For the picked model a person sets a label on a version; picks a candidate version and
drags the canary and shadow sliders (the share of the requests that name no version that
the candidate answers, or also runs off the reply's path); applies them in one click;
watches the shadow's agreement with the answers sent and both latencies refresh with the
dashboard; sees the last inputs on which the shadow disagreed, as images beside both
answers; and promotes the candidate (it becomes the default, pinned, and the policy is
cleared) or rolls back (the policy is cleared, the default answers everything), one
click each. Every action is one backend call (``Backend.set_traffic``, ``promote``...);
the figures come with the shell's refreshed status (``ModelStatus.rollout``).

The sliders follow the model's policy when the model is picked and after each action,
never on a refresh, so a refresh never moves a slider under a person's hand.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, ClassVar

import ipywidgets as W

from yyai_kernel.dashboard.render import (
    dropdown,
    fmt,
    message_html,
    model_options,
    with_classes,
)
from yyai_kernel.types import Disagreement, ModelStatus, ServerStatus, TrafficPolicy

if TYPE_CHECKING:
    from yyai_kernel.dashboard.shell import Dashboard

SHOWN_DISAGREEMENTS = 8


class RolloutTab:
    """Labels, the traffic policy and its figures for one model."""

    key: ClassVar[str] = "rollout"
    title: ClassVar[str] = "Rollout"

    def __init__(self, shell: Dashboard):
        self.shell = shell
        self._build()
        guard, message = shell.guard, self.message
        self.model_select.observe(guard(self._on_model, message), "value")
        self.apply_button.on_click(guard(self.apply, message, observer=False))
        self.promote_button.on_click(guard(self.promote, message, observer=False))
        self.rollback_button.on_click(guard(self.roll_back, message, observer=False))
        self.label_button.on_click(guard(self.set_label, message, observer=False))
        self.unlabel_button.on_click(guard(self.delete_label, message, observer=False))

    def _build(self) -> None:
        self.model_select = dropdown("Model", "yyai-rollout-model")
        self.candidate_select = dropdown("Candidate", "yyai-rollout-candidate")
        self.canary_slider = _slider("Canary %", "yyai-canary-slider")
        self.shadow_slider = _slider("Shadow %", "yyai-shadow-slider")
        self.sticky = with_classes(W.Checkbox(description="Sticky keys (X-Yyai-Sticky, v2 id)",
                                              indent=False), "yyai-sticky")
        self.apply_button = _button("Apply", "check", "primary", "yyai-rollout-apply")
        self.promote_button = _button("Promote candidate", "arrow-up", "success", "yyai-promote-button")
        self.rollback_button = _button("Roll back", "undo", "warning", "yyai-rollback-button")
        self.label_name = with_classes(W.Text(description="Label", placeholder="stable", style={
            "description_width": "100px"}, layout=W.Layout(width="290px")), "yyai-label-name")
        self.label_version = dropdown("Version", "yyai-label-version")
        self.label_button = _button("Set label", "tag", "", "yyai-label-set")
        self.unlabel_button = _button("Delete label", "times", "", "yyai-label-delete")
        self.labels = with_classes(W.HTML(), "yyai-labels")
        self.policy = with_classes(W.HTML(), "yyai-rollout-policy")
        self.message = with_classes(W.HTML(), "yyai-rollout-message")
        self.figures = with_classes(W.HTML(), "yyai-rollout-figures")
        self.disagreements = with_classes(W.HTML(), "yyai-disagreements")
        controls = with_classes(W.VBox([
            W.HTML("<b>Model</b>"), self.model_select,
            W.HTML("<b>Labels</b>"), self.labels, self.label_name, self.label_version,
            W.HBox([self.label_button, self.unlabel_button]),
            W.HTML("<b>Traffic of requests that name no version</b>"), self.candidate_select,
            self.canary_slider, self.shadow_slider, self.sticky, self.apply_button,
            W.HBox([self.promote_button, self.rollback_button]), self.message,
        ], layout=W.Layout(width="340px", min_width="340px")), "yyai-panel", "yyai-controls")
        right = with_classes(W.VBox([self.policy, self.figures, W.HTML("<b>Recent disagreements</b>"),
                                     self.disagreements]), "yyai-panel")
        self.widget = W.HBox([controls, right])

    # --- following the status -----------------------------------------------------------------

    def update(self, status: ServerStatus) -> None:
        before = self.model_select.value
        self.shell.set_options(self.model_select, model_options(status), preferred=self.shell.picked.name)
        self._show(status.models.get(self.model_select.value), sync=before != self.model_select.value)

    def shown(self) -> None:
        followed = self.shell.picked.follow(self.model_select)  # picked in another tab meanwhile
        self._show(self._model(), sync=followed)

    def _model(self) -> ModelStatus | None:
        return self.shell.status.models.get(self.model_select.value)

    def _on_model(self, _change) -> None:
        self.shell.picked(self.model_select.value)
        self._show(self._model(), sync=True)

    def _show(self, model: ModelStatus | None, *, sync: bool) -> None:
        if model is None:
            return
        others = [(f"v{v}", v) for v in sorted(model.versions) if v != model.default]
        candidate = _candidate(model.traffic)
        self.shell.set_options(self.candidate_select, others, preferred=candidate, select=sync)
        self.shell.set_options(self.label_version, [(f"v{v}", v) for v in sorted(model.versions)],
                               preferred=model.default)
        if sync:
            self._sync_sliders(model.traffic)
        _set(self.labels, labels_html(model))
        _set(self.policy, policy_html(model))
        _set(self.figures, figures_html(model))
        self.promote_button.disabled = candidate is None
        self.rollback_button.disabled = model.traffic is None
        if self.shell.showing(self):  # the ring is fetched only while someone looks at it
            _set(self.disagreements, disagreements_html(self.shell.backend.disagreements(model.name)))

    def _sync_sliders(self, policy: TrafficPolicy | None) -> None:
        with self.shell.quiet():
            self.canary_slider.value = round(policy.canary.percent) if policy and policy.canary else 0
            self.shadow_slider.value = round(policy.shadow.percent) if policy and policy.shadow else 0
            self.sticky.value = bool(policy and policy.sticky)

    # --- actions -----------------------------------------------------------------------------

    def apply(self, _button=None) -> ModelStatus:
        """Set the policy the sliders say (both at 0: clear it)."""
        name, candidate = self.model_select.value, self.candidate_select.value
        canary, shadow = self.canary_slider.value, self.shadow_slider.value
        if not canary and not shadow:
            return self.roll_back()
        if candidate is None:
            raise ValueError(f"{name} has one version: there is no candidate to send traffic to. Install another "
                             "version in the Manage tab first.")
        document = {side: {"version": candidate, "percent": percent}
                    for side, percent in (("canary", canary), ("shadow", shadow)) if percent}
        status = self._after(self.shell.backend.set_traffic(name, {**document, "sticky": self.sticky.value}))
        self._say("ok", f"{name}: " + policy_text(status.traffic) + ".")
        return status

    def promote(self, _button=None) -> ModelStatus:
        name = self.model_select.value
        status = self._after(self.shell.backend.promote(name))
        self._say("ok", f"v{status.default} is now the default of {name} (pinned); the policy is cleared.")
        return status

    def roll_back(self, _button=None) -> ModelStatus:
        name = self.model_select.value
        status = self._after(self.shell.backend.clear_traffic(name))
        self._say("ok", f"Rolled back: v{status.default} answers every request to {name} again.")
        return status

    def set_label(self, _button=None) -> ModelStatus:
        name, label, version = self.model_select.value, self.label_name.value.strip(), self.label_version.value
        status = self._after(self.shell.backend.set_label(name, label, version))
        self._say("ok", f"{name}@{label} now names v{version}.")
        return status

    def delete_label(self, _button=None) -> ModelStatus:
        name, label = self.model_select.value, self.label_name.value.strip()
        status = self._after(self.shell.backend.delete_label(name, label))
        self._say("ok", f"Deleted the label {label!r} of {name}.")
        return status

    def _after(self, status: ModelStatus) -> ModelStatus:
        self.shell.refresh()
        self._sync_sliders(status.traffic)
        return status

    def _say(self, kind: str, text: str) -> None:
        self.message.value = message_html(kind, text)


# --- rendering (pure) ---------------------------------------------------------------------------


def policy_text(policy: TrafficPolicy | None) -> str:
    if policy is None:
        return "no traffic policy: the default answers every request"
    sides = [f"{side} v{split.version} at {split.percent:g}%" for side in ("canary", "shadow")
             if (split := getattr(policy, side)) is not None]
    return ", ".join(sides) + (" (sticky)" if policy.sticky else "")


def labels_html(model: ModelStatus) -> str:
    if not model.labels:
        return "<span class='yyai-subtle'>No labels.</span>"
    return " ".join(f"<span class='yyai-state yyai-state-ready'>{html.escape(k)} → v{v}</span>"
                    for k, v in sorted(model.labels.items()))


def policy_html(model: ModelStatus) -> str:
    return (f"<b>{html.escape(model.name)}</b>: default v{model.default}; "
            f"{html.escape(policy_text(model.traffic))}")


def figures_html(model: ModelStatus) -> str:
    """The running canary and shadow figures as a table (empty without a policy)."""
    figures = model.rollout
    if figures is None:
        return ""
    rows = [("Requests naming no version", str(figures.default_requests))]
    if figures.canary is not None:
        c = figures.canary
        rows.append((f"Canary v{c.version}", f"{c.requests} answered, {c.fallbacks} handed to the default"))
    if figures.shadow is not None:
        s = figures.shadow
        agreement = "–" if s.agreement is None else f"{100 * s.agreement:.1f}%"
        rows += [(f"Shadow v{s.version} agreement", f"<span class='yyai-agreement'>{agreement}</span> of "
                  f"{s.rows_compared} rows; largest |Δ| {fmt(s.max_abs_diff, 3)}"),
                 ("Shadow runs", shadow_runs_text(s.runs, s.errors, s.dropped)),
                 ("Latency p50 / p99", f"real {fmt(s.real_latency_ms.p50, 2)} / {fmt(s.real_latency_ms.p99, 2)} ms; "
                  f"shadow {fmt(s.latency_ms.p50, 2)} / {fmt(s.latency_ms.p99, 2)} ms")]
        if s.last_error:
            rows.append(("Last shadow error", html.escape(s.last_error)))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='yyai-table yyai-rollout-table'>{body}</table>"


def shadow_runs_text(runs: int, errors: int, dropped: int) -> str:
    """"13 started, none failed or skipped", or what went wrong: "2 failed; 5 skipped: the shadow queue was full"."""
    if not errors and not dropped:
        return f"{runs} started, none failed or skipped"
    trouble = ([f"{errors} failed"] if errors else []) + (
        [f"{dropped} skipped: the shadow queue was full"] if dropped else [])
    return f"{runs} started; " + "; ".join(trouble)


def disagreements_html(found: list[Disagreement]) -> str:
    """The newest disagreements side by side: the input's thumbnail, the answer sent, the shadow's."""
    if not found:
        return "<span class='yyai-subtle'>None yet.</span>"
    cards = []
    for d in found[:SHOWN_DISAGREEMENTS]:
        image = (f"<img class='yyai-pixelated' width='64' height='64' alt='input' "
                 f"src='data:image/png;base64,{base64.b64encode(d.input.png).decode()}'>" if d.input.png else
                 f"<span class='yyai-subtle'>tensor {d.input.shape}, mean {d.input.mean:.3g}</span>")
        cards.append(
            f"<div class='yyai-panel yyai-disagreement' data-id='{d.id}'>{image}<br>"
            f"sent v{d.version}: <b>{html.escape(str(d.top))}</b> {_probability(d, d.top, shadow=False)}<br>"
            f"shadow v{d.shadow_version}: <b class='yyai-disagree'>{html.escape(str(d.shadow_top))}</b> "
            f"{_probability(d, d.shadow_top, shadow=True)}<br>"
            f"<span class='yyai-subtle'>|Δ| {fmt(d.abs_diff, 3)}"
            f"{' · ' + html.escape(d.input.filename) if d.input.filename else ''}</span></div>")
    return "<div style='display:flex;flex-wrap:wrap'>" + "".join(cards) + "</div>"


def _probability(d: Disagreement, label: str | None, *, shadow: bool) -> str:
    labels, values = (d.shadow_labels, d.shadow_output) if shadow else (d.labels, d.output)
    return f"({values[labels.index(label)]:.2f})" if label in labels else ""


def _candidate(policy: TrafficPolicy | None) -> int | None:
    split = policy and (policy.canary or policy.shadow)
    return split.version if split else None


def _slider(description: str, css_class: str) -> W.IntSlider:
    return with_classes(W.IntSlider(value=0, min=0, max=100, step=1, description=description, continuous_update=False,
                                    style={"description_width": "100px"}, layout=W.Layout(width="320px")), css_class)


def _button(description: str, icon: str, style: str, css_class: str) -> W.Button:
    return with_classes(W.Button(description=description, icon=icon, button_style=style), css_class)


def _set(widget: W.HTML, value: str) -> None:
    if widget.value != value:
        widget.value = value
