"""The dashboard in headless Chromium: one package, so that its modules share one browser and one server.

A package-scoped fixture lives exactly as long as the package's tests run (``conftest.py``), and
``make test`` gives the whole package to one worker (``tests/conftest.py``): Chromium and the demo
dashboard server start once for these modules, not once each, and stop before the worker goes on.
"""
