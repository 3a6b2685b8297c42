"""JsonView: read access to a typed result through its JSON form, for scripts that index dicts.

Every result reads like its JSON (``status["versions"]["2"]["state"]``); code inside yyai uses the attributes.
"""

from __future__ import annotations

from typing import Any


class JsonView:
    """Read access to a result through its JSON form, for scripts that index dicts."""

    def to_json(self) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, key: Any) -> Any:
        return self.to_json()[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.to_json().get(key, default)

    def __contains__(self, key: object) -> bool:
        return bool(key in self.to_json())

