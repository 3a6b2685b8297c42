"""The browser package's shared fixtures: one headless Chromium and one demo dashboard server.

Package scope: each starts at its first use by a module of ``tests/browser/`` and stops when the
package's last test ends. The modules that share ``demo_dashboard`` leave its state as they found
it, except the Evaluate tab's module, which runs last (collection order) and loads digits v1.
"""

from __future__ import annotations

import pytest

from browser.test_dashboard_browser import demo_server, headless_chromium


@pytest.fixture(scope="package")
def browser():
    yield from headless_chromium()


@pytest.fixture(scope="package")
def demo_dashboard(tmp_path_factory):
    yield from demo_server(tmp_path_factory)
