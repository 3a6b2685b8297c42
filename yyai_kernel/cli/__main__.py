"""``python -m yyai_kernel.cli``: the same as the ``yyai`` command."""

from yyai_kernel.cli import main

main()
