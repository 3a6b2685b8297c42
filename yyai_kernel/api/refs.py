"""Reading a request's model reference and flags: the edge where they are parsed, once.

Every endpoint that names a model reads it here: the ``{name}`` and optional ``{version}``
of its path (or ``?version=``) become one :class:`~yyai_kernel.types.ModelRef` (400 on a bad
one, before any body matters), and the metrics are labelled with it.
"""

from __future__ import annotations

from yyai_kernel.api.call import Call
from yyai_kernel.types import ModelRef, check_name


def path_ref(call: Call, *, query_version: bool = False) -> ModelRef:
    """The model reference a request names: its path's name and version (or ``?version=``)."""
    version = call.query.get("version") if query_version else call.path.get("version")
    ref = ModelRef.parse(call.path["name"], version)
    call.label(ref.name, version)
    return ref


def path_name(call: Call) -> str:
    """The model name of the path, checked (400), and labelled for the metrics."""
    name = check_name(call.path["name"])
    call.label(name)
    return name
