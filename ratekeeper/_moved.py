"""The module paths that became private before 0.1.0, kept working for one release.

``ratekeeper.engine``, ``ratekeeper.server.app`` and the rest of the implementation modules are
private now (``ratekeeper._engine``, ``ratekeeper.server._app``); the public names live in the
facades (``ratekeeper``, ``ratekeeper.server``, ``ratekeeper.chatkit``, ``ratekeeper.redis``,
``ratekeeper.store``, ``ratekeeper.testing``). Each facade registers its old submodule paths
here, so ``from ratekeeper.engine import Engine`` and ``uvicorn --factory
ratekeeper.server._app:app_from_env`` still work, with a :class:`DeprecationWarning` naming the
new home. No file is left behind for them: the old path is an entry in :data:`sys.modules`
whose attributes are read from the private module on first use.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType
from typing import Any


class _MovedModule(ModuleType):
    """Stands at an old module path; forwards every attribute to the private module, warning."""

    def __init__(self, old: str, new: str, facade: str) -> None:
        super().__init__(old, f"Deprecated: moved to {new}; import public names from {facade}.")
        self._ratekeeper_new = new
        self._ratekeeper_facade = facade

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            # The import system and inspect probe dunders (__path__, __file__...); an old
            # path is a plain module with none of them.
            raise AttributeError(name)
        new, facade = self._ratekeeper_new, self._ratekeeper_facade
        public = name in getattr(sys.modules.get(facade), "__all__", ())
        try:
            value = getattr(importlib.import_module(new), name)
        except AttributeError:
            if not public:
                raise
            # A public name that has since moved on to another private module (``ApiError``
            # left ``server.responses``): its facade has it.
            value = getattr(sys.modules[facade], name)
        advice = f"import {name} from {facade}" if public else f"{name} is not public API"
        warnings.warn(
            f"{self.__name__} became private ({new}); this path goes away in the release "
            f"after 0.1.0: {advice}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value

    def __dir__(self) -> list[str]:
        return dir(importlib.import_module(self._ratekeeper_new))


def register_moved(package: str, moves: dict[str, str]) -> None:
    """Make ``package.<old>`` import as a forwarder to ``package.<new>``, for each pair."""
    parent = sys.modules[package]
    for old, new in moves.items():
        name = f"{package}.{old}"
        module = sys.modules.get(name)
        if module is None:
            module = _MovedModule(name, f"{package}.{new}", package)
            sys.modules[name] = module
        # `import ratekeeper.engine` then `ratekeeper._engine.X` reads the parent's attribute.
        setattr(parent, old, module)
