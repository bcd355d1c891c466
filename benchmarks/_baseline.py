"""Load one module of a baseline checkout by its path, beside this checkout's package.

For the benchmarks that compare a function the baseline had in a module this checkout no
longer has (``--baseline-src``): the module is loaded under a private name inside
``ratekeeper.server``, so its relative imports resolve against this checkout's package.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def load_baseline_module(src: str, path: str, package: str = "ratekeeper.server") -> ModuleType:
    """Return the module at ``<src>/<path>``, executed as a private module of ``package``."""
    name = f"{package}._baseline_{path.rpartition('/')[2].removesuffix('.py')}"
    spec = importlib.util.spec_from_file_location(name, f"{src}/{path}")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = package
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
