"""``python -m yyai_kernel.cli``: the same as the ``yyai`` command."""

from . import main

main()
