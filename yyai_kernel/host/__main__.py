"""``python -m yyai_kernel.host``: the model host process (see ``main.py``)."""

from yyai_kernel.host.main import main

main()
