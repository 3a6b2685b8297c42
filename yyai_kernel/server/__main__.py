"""``python -m yyai_kernel.server``: run the server (same options as ``yyai serve``)."""

from .app import main

main()
