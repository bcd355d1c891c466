"""Fixtures and settings for every test.

The service's default conversation store is a SQLite file in the user's data directory; tests
must never write there, so the whole run gets a private ``XDG_DATA_HOME`` before any app is
built (an app built without an explicit store then opens ``<tmp>/ratekeeper/...``).
"""

from __future__ import annotations

import os
import tempfile

# tests/testing/ runs user projects' test files under pytest's own `pytester`.
pytest_plugins = ("pytester",)

_DATA_HOME = tempfile.mkdtemp(prefix="ratekeeper-tests-data-")
os.environ["XDG_DATA_HOME"] = _DATA_HOME
os.environ.pop("RATEKEEPER_DATA_DIR", None)
os.environ.pop("RATEKEEPER_STORE", None)
