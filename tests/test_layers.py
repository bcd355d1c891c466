"""The layers are a checked fact: the Redis backend and the metrics never import the engine.

Read from the source, as import-linter does: importing ``ratekeeper.redis`` at run time runs
``ratekeeper/__init__.py`` first, which imports every public module, so ``sys.modules`` cannot
tell who imports whom. A module's own import statements (``TYPE_CHECKING`` ones included) can;
the implicit import of a module's parent packages is not counted.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import ratekeeper

ROOT = Path(ratekeeper.__file__).parent
ENGINE = "ratekeeper._engine"


def _path(module: str) -> Path | None:
    """The file of a ``ratekeeper`` module or package, ``None`` outside the package."""
    parts = module.split(".")
    if parts[0] != "ratekeeper":
        return None
    base = ROOT.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _imports(module: str) -> frozenset[str]:
    """The ``ratekeeper`` modules one module's own import statements name."""
    path = _path(module)
    assert path is not None, module
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{node.module}" if node.module else anchor
            else:
                base = node.module or ""
            found.add(base)
            # ``from . import keys`` imports a module, not a name.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(name for name in found if _path(name) is not None)


def _reachable(module: str) -> set[str]:
    """Every ``ratekeeper`` module ``module`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in _imports(todo.pop()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def _redis_modules() -> list[str]:
    return sorted(
        f"ratekeeper.redis.{path.stem}" if path.stem != "__init__" else "ratekeeper.redis"
        for path in (ROOT / "redis").glob("*.py")
    )


@pytest.mark.parametrize("module", [*_redis_modules(), "ratekeeper._metrics"])
def test_the_redis_backend_and_the_metrics_do_not_import_the_engine(module: str) -> None:
    """They need only the shared value types (``ratekeeper._types``), not the in-memory engine."""
    assert ENGINE not in _reachable(module)


def test_the_import_check_sees_engine_imports_where_they_are() -> None:
    """Not vacuous: the gate and the memory backend do reach the engine."""
    assert ENGINE in _reachable("ratekeeper._backend")
    assert ENGINE in _reachable("ratekeeper._gate")
    assert "ratekeeper.redis._keys" in _reachable("ratekeeper.redis")
