"""The CLI's words for next steps (:mod:`yyai_kernel.hints`): commands a person can type.

The library says what to do next as a typed hint; the REST API words it as a route, and
here it becomes a ``yyai`` command, so that no CLI message sends the reader to curl.
"""

from __future__ import annotations

from yyai_kernel.hints import Hint, Step, Words


def _model(hint: Hint) -> str:
    return hint.name or "MODEL"


def _load(hint: Hint) -> str:
    version = "" if hint.version is None else f" {hint.version}"
    return f"load it with `yyai load {_model(hint)}{version}`"


CLI_WORDS: Words = {
    Step.LOAD: _load,
    Step.FOLLOW_LATEST: lambda h: f"`yyai default {_model(h)} --latest` follows the latest again",
    Step.PIN: lambda h: f"make a version the default with `yyai default {_model(h)} {h.version or 'VERSION'}`",
    Step.SET_TRAFFIC: lambda h: f"set one with `yyai traffic {_model(h)} --canary VERSION:PERCENT`",
    Step.TRUST: lambda h: ("if you trust its source, pass --trust (on a server: "
                           f"yyai serve --trust {_model(h)})"),
    Step.PACK: lambda h: "pack the model into one with `yyai archive --model FILE ...`",
    Step.MOVE_LABEL: lambda h: (f"move or delete the label first (`yyai label {_model(h)} {h.label or 'LABEL'} "
                                f"VERSION`, or --delete)"),
    Step.CLEAR_TRAFFIC: lambda h: f"clear the traffic policy first (`yyai traffic {_model(h)} --clear`)",
    Step.BUMP_VERSION: lambda h: "pack it again under a new version number (`yyai archive --version N ...`)",
    Step.REPLACE: lambda h: "or replace the content with `yyai upload --replace`",
}
