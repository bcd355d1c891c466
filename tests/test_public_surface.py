"""The rule for the public surface, checked over every module of the package.

Like anyio's ``tests/test_all_attributes.py``: the public names are exactly the ``__all__`` of
the facades; every other module is private (a leading underscore somewhere in its path) and
declares no ``__all__``; the exception tree drawn in ``ratekeeper._errors`` is the real one;
and the module paths that became private still import, with a warning, for one release.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

import ratekeeper

FACADES = (
    "ratekeeper",
    "ratekeeper.chatkit",
    "ratekeeper.redis",
    "ratekeeper.server",
    "ratekeeper.store",
    "ratekeeper.testing",
)
#: Public modules that are not facades: entry points named by their path.
ENTRY_POINTS = ("ratekeeper.__main__", "ratekeeper.testing.plugin")

PACKAGE_DIR = Path(ratekeeper.__file__).parent


def _all_modules() -> list[str]:
    names = ["ratekeeper"]
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "ratekeeper."):
        names.append(info.name)
    return names


def _is_private(name: str) -> bool:
    return any(part.startswith("_") and part != "__main__" for part in name.split(".")[1:])


def _facade(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def test_every_module_is_a_facade_an_entry_point_or_private() -> None:
    loose = [
        name
        for name in _all_modules()
        if name not in FACADES and name not in ENTRY_POINTS and not _is_private(name)
    ]
    assert loose == [], f"public modules that are not facades: {loose}"


def test_module_file_names_are_distinct() -> None:
    """No two modules share a name (``context.py`` twice, ``_backend.py`` twice...)."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name in {"__init__.py", "__main__.py"}:
            continue
        stem = path.stem.lstrip("_")
        if stem in seen:
            clashes.append((seen[stem], path))
        seen[stem] = path
    assert clashes == []


@pytest.mark.parametrize("name", [m for m in _all_modules() if _is_private(m)])
def test_private_modules_declare_no_all(name: str) -> None:
    module = importlib.import_module(name)
    assert not hasattr(module, "__all__"), f"{name} is private: its names are exported by a facade"


@pytest.mark.parametrize("name", FACADES)
def test_facade_all_is_exactly_its_public_names(name: str) -> None:
    module = _facade(name)
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert len(set(exported)) == len(exported), "a name is listed twice"
    missing = [attribute for attribute in exported if not hasattr(module, attribute)]
    assert missing == []
    public = {
        attribute
        for attribute, value in vars(module).items()
        if not attribute.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", None) not in {"__future__", "typing"}
        and attribute != "TYPE_CHECKING"
    }
    assert public <= set(exported), f"public but not in __all__: {sorted(public - set(exported))}"


@pytest.mark.parametrize("name", FACADES)
def test_facade_exports_come_from_ratekeeper(name: str) -> None:
    """A facade exports ratekeeper's own classes and functions, not a dependency's."""
    module = _facade(name)
    for attribute in module.__all__:
        value = getattr(module, attribute)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("ratekeeper"), attribute


def _exported_exceptions() -> dict[type[BaseException], set[str]]:
    found: dict[type[BaseException], set[str]] = {}
    for name in FACADES:
        module = _facade(name)
        for attribute in module.__all__:
            value = getattr(module, attribute)
            if isinstance(value, type) and issubclass(value, BaseException):
                found.setdefault(value, set()).add(name)
    return found


_TREE_LINE = re.compile(r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z]\w+)\s+(?P<facade>ratekeeper[\w.]*)")


def _drawn_tree() -> list[tuple[int, str, str]]:
    doc = importlib.import_module("ratekeeper._errors").__doc__
    assert doc is not None
    rows = []
    for line in doc.splitlines():
        match = _TREE_LINE.match(line.removeprefix("    "))
        if match:
            rows.append((len(match["indent"]), match["name"], match["facade"]))
    return rows


def test_every_exception_is_under_the_root_and_drawn_where_it_is() -> None:
    rows = _drawn_tree()
    assert rows[0][1:] == ("RatekeeperError", "ratekeeper")
    parents: list[tuple[int, type[BaseException]]] = []
    drawn: dict[type[BaseException], str] = {}
    for indent, name, facade in rows:
        cls = getattr(_facade(facade), name)
        assert isinstance(cls, type), name
        assert issubclass(cls, ratekeeper.RatekeeperError), name
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if parents:
            parent = parents[-1][1]
            own_bases = [b for b in cls.__bases__ if issubclass(b, ratekeeper.RatekeeperError)]
            assert own_bases == [parent], f"{name} is drawn under {parent.__name__}"
        parents.append((indent, cls))
        drawn[cls] = facade
    exported = _exported_exceptions()
    assert set(exported) == set(drawn), "every exported exception is drawn, and only those"
    misplaced = {cls.__name__ for cls, facade in drawn.items() if facade not in exported[cls]}
    assert misplaced == set()


def test_gate_rejection_carries_a_typed_decision() -> None:
    hints = ratekeeper.GateRejection.__init__.__annotations__
    assert hints["decision"] == "Decision | None"


def test_upload_decision_reason_is_an_enum() -> None:
    engine = ratekeeper.Engine(ratekeeper.ManualClock())
    session = engine.create_session("u")
    decision = engine.reserve_upload(session.id, 1)
    assert decision.reason is ratekeeper.UploadReason.UPLOADS_DISABLED
    reason: str = decision.reason  # a StrEnum: still equal to its old plain-string value
    assert reason == "uploads_disabled"


MOVED = {
    "ratekeeper.engine": ("Engine", "ratekeeper"),
    "ratekeeper.gate": ("Gate", "ratekeeper"),
    "ratekeeper.errors": ("RatekeeperError", "ratekeeper"),
    "ratekeeper.types": ("Decision", "ratekeeper"),
    "ratekeeper.server.app": ("app_from_env", "ratekeeper.server"),
    "ratekeeper.server.protocol": ("LimitedHTTPProtocol", "ratekeeper.server"),
    "ratekeeper.chatkit.route": ("chatkit_routes", "ratekeeper.chatkit"),
    "ratekeeper.redis.backend": ("RedisBackend", "ratekeeper.redis"),
}


@pytest.mark.parametrize(("old", "expected"), MOVED.items())
def test_old_module_paths_still_import_and_warn(old: str, expected: tuple[str, str]) -> None:
    name, facade = expected
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old)} became private.*{facade}"):
        value = getattr(module, name)
    assert value is getattr(_facade(facade), name)


def test_a_public_name_that_moved_on_is_found_through_its_old_path() -> None:
    """``ApiError`` was in ``server/responses.py`` and now lives elsewhere; its facade has it."""
    module = importlib.import_module("ratekeeper.server.responses")
    with pytest.warns(DeprecationWarning, match="import ApiError from ratekeeper.server"):
        value = module.ApiError
    assert value is _facade("ratekeeper.server").ApiError
    assert not hasattr(importlib.import_module("ratekeeper.server._responses"), "ApiError")


def test_private_helpers_through_old_paths_say_they_are_not_public() -> None:
    module = importlib.import_module("ratekeeper.window")
    with pytest.warns(DeprecationWarning, match="decide is not public API"):
        assert module.decide is importlib.import_module("ratekeeper._window").decide
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_from_import_through_an_old_path_warns_at_the_importing_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec("from ratekeeper.engine import Engine", {"__name__": "user_module"})  # noqa: S102
    assert [str(w.message).split(";")[0] for w in caught] == [
        "ratekeeper.engine became private (ratekeeper._engine)"
    ]
    assert caught[0].filename == "<string>"


def test_uvicorn_still_finds_the_old_factory_path() -> None:
    """``uvicorn --factory ratekeeper.server.app:app_from_env`` as documented before."""
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "from uvicorn.importer import import_from_string\n"
        "try:\n"
        "    import_from_string('ratekeeper.server.app:app_from_env')\n"
        "except DeprecationWarning as w:\n"
        "    print('warned:', w)\n"
        "print(import_from_string('ratekeeper.server:app_from_env').__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "warned: ratekeeper.server.app became private" in out
    assert out.strip().endswith("app_from_env")
