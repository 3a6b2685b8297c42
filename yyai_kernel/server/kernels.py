"""The dashboard kernels' manager: Voila's kernel manager plus the server's URL and token.

The dashboard kernel is thin: it reaches the registry over the REST API on loopback
(``yyai_kernel.client.YyaiClient()``), so it needs the server's URL and token. Voila
already hands the kernel its environment (``VOILA_APP_PORT``, ``VOILA_BASE_URL``, ...);
this manager adds ``YYAI_URL`` and ``YYAI_TOKEN`` to exactly that environment, and to
no other process's.
"""

from __future__ import annotations

import os

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Dict


class YyaiKernelManager(AsyncMappingKernelManager):
    """Starts kernels with ``extra_env`` (set by the server once it listens) added."""

    extra_env = Dict({}, help="Variables added to every kernel's environment.")

    async def start_kernel(self, *, kernel_name=None, **kwargs):  # type: ignore[override]
        env = kwargs.get("env")
        kwargs["env"] = {**(env if env is not None else os.environ), **self.extra_env}
        return await super().start_kernel(kernel_name=kernel_name, **kwargs)
