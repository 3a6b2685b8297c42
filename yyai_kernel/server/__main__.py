"""``python -m yyai_kernel.server``: run the server (same options as ``yyai serve``)."""

from yyai_kernel.server.app import main

main()
