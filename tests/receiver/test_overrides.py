"""The upgrade checklist (``receiver.overrides``) names exactly what we take from pynetdicom.

No server here: the receiver's modules are imported and read, and pynetdicom's installed
source is read. Each test says what to change in ``UPGRADE_CHECKLIST`` when it fails.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from collections import defaultdict
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pynetdicom
import pytest

import receiver
from receiver.overrides import CHECKED_AGAINST, UPGRADE_CHECKLIST, Kind, UpstreamPoint

#: Names Python puts in a class's namespace by itself: never overrides.
_IMPLICIT = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
        "__annotations__",
        "__firstlineno__",
        "__static_attributes__",
        "__orig_bases__",
        "__parameters__",
        "__slots__",
    }
)


def _receiver_modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"receiver.{info.name}")
        for info in pkgutil.iter_modules(receiver.__path__)
    ]


def _from_pynetdicom(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "pynetdicom"


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _our_subclasses() -> dict[type, type]:
    """Each class of the receiver that subclasses a pynetdicom class: the nearest such base."""
    found = {}
    for module in _receiver_modules():
        for obj in vars(module).values():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                bases = [base for base in obj.__mro__[1:] if _from_pynetdicom(base)]
                if bases:
                    found[obj] = bases[0]
    return found


def _listed(kind: Kind) -> list[UpstreamPoint]:
    return [point for point in UPGRADE_CHECKLIST if point.kind is kind]


def test_every_subclass_of_a_pynetdicom_class_is_listed() -> None:
    found = {(_qualified(ours), _qualified(base)) for ours, base in _our_subclasses().items()}
    listed = {(point.ours[0], point.upstream) for point in _listed(Kind.SUBCLASS)}
    assert sorted(found - listed) == [], "add these SUBCLASS points to UPGRADE_CHECKLIST"
    assert sorted(listed - found) == [], "no such subclass: remove or correct these points"


def test_every_override_of_a_pynetdicom_class_member_is_listed() -> None:
    found = set()
    for ours in _our_subclasses():
        for name in vars(ours):
            if name in _IMPLICIT:
                continue
            owner = next((base for base in ours.__mro__[1:] if name in vars(base)), None)
            if owner is not None and owner is not object:
                found.add((f"{_qualified(ours)}.{name}", f"{_qualified(owner)}.{name}"))
    listed = {(point.ours[0], point.upstream) for point in _listed(Kind.OVERRIDE)}
    assert sorted(found - listed) == [], "add these OVERRIDE points to UPGRADE_CHECKLIST"
    assert sorted(listed - found) == [], "no such override: remove or correct these points"


@cache
def _pynetdicom_source() -> str:
    package = Path(pynetdicom.__file__).parent
    return "\n".join(path.read_text() for path in sorted(package.glob("*.py")))


@cache
def _defined_by_pynetdicom_bases(cls: type, name: str) -> bool:
    """Whether a pynetdicom class ``cls`` inherits from uses ``name`` as a member."""
    pattern = re.compile(rf"(self\.|def ){re.escape(name)}\b")
    return any(
        pattern.search(inspect.getsource(base))
        for base in cls.__mro__[1:]
        if _from_pynetdicom(base)
    )


def _in_pynetdicom(name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", _pynetdicom_source()) is not None


class _PrivateUses(ast.NodeVisitor):
    """Collects the private pynetdicom names a receiver module uses.

    A private name (``_x``) counts when it is read, set or called on an object of
    pynetdicom's and pynetdicom has it: on ``self`` in a subclass of a pynetdicom class that
    does not define it itself (its own overrides are checked above; ``super()`` calls too),
    on any other object when pynetdicom's source names it. A name imported from one of
    pynetdicom's private modules counts too, as does every attribute read of such a module.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.found: set[str] = set()
        self._classes: list[type | None] = []
        self._private_modules: set[str] = set()

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] == "pynetdicom":
            source = importlib.import_module(node.module)
            for alias in node.names:
                if not alias.name.startswith("_"):
                    continue
                if inspect.ismodule(getattr(source, alias.name)):
                    self._private_modules.add(alias.asname or alias.name)
                else:
                    self.found.add(alias.name)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        cls = getattr(self.module, node.name, None) if not self._classes else None
        self._classes.append(cls if inspect.isclass(cls) else None)
        self.generic_visit(node)
        self._classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name, value = node.attr, node.value
        if isinstance(value, ast.Name) and value.id in self._private_modules:
            self.found.add(name)
        elif name.startswith("_") and not name.startswith("__"):
            if isinstance(value, ast.Name) and value.id == "self":
                cls = self._classes[-1] if self._classes else None
                if (
                    cls is not None
                    and name not in vars(cls)
                    and _defined_by_pynetdicom_bases(cls, name)
                ):
                    self.found.add(name)
            elif not _is_super_call(value) and _in_pynetdicom(name):
                self.found.add(name)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.startswith("_")
            and _in_pynetdicom(node.args[1].value)
        ):
            self.found.add(node.args[1].value)
        self.generic_visit(node)


def _is_super_call(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def test_every_private_pynetdicom_name_used_is_listed_where_it_is_used() -> None:
    found: dict[str, set[str]] = {}
    for module in _receiver_modules():
        visitor = _PrivateUses(module)
        visitor.visit(ast.parse(inspect.getsource(module)))
        if visitor.found:
            found[module.__name__] = visitor.found
    listed: dict[str, set[str]] = defaultdict(set)
    for point in _listed(Kind.PRIVATE):
        for module_name in point.ours:
            listed[module_name].add(point.name)
    missing = sorted((m, n) for m, names in found.items() for n in names - listed[m])
    stale = sorted((m, n) for m, names in listed.items() for n in names - found.get(m, set()))
    assert missing == [], "add these (module, name) to PRIVATE points of UPGRADE_CHECKLIST"
    assert stale == [], "no longer used there: remove them from their PRIVATE points"


class _Patches(ast.NodeVisitor):
    """Collects the functions of pynetdicom's modules a receiver module replaces.

    An assignment to, or ``setattr`` of, an attribute of a pynetdicom module bound by an
    import, when that attribute is callable; pynetdicom's settings (``_config``) are not.
    """

    def __init__(self) -> None:
        self.found: set[str] = set()
        self._modules: dict[str, ModuleType] = {}

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "pynetdicom" and alias.asname:
                self._modules[alias.asname] = importlib.import_module(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] == "pynetdicom":
            source = importlib.import_module(node.module)
            for alias in node.names:
                if inspect.ismodule(getattr(source, alias.name, None)):
                    self._modules[alias.asname or alias.name] = getattr(source, alias.name)

    def _note(self, owner: ast.expr, name: str) -> None:
        if isinstance(owner, ast.Name) and owner.id in self._modules:
            module = self._modules[owner.id]
            if callable(getattr(module, name, None)):
                self.found.add(f"{module.__name__}.{name}")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Attribute):
                self._note(target.value, target.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            self._note(node.args[0], node.args[1].value)
        self.generic_visit(node)


def test_every_pynetdicom_function_replaced_is_listed() -> None:
    found = set()
    for module in _receiver_modules():
        visitor = _Patches()
        visitor.visit(ast.parse(inspect.getsource(module)))
        found |= {(module.__name__, upstream) for upstream in visitor.found}
    listed = {(point.ours[0].rsplit(".", 1)[0], point.upstream) for point in _listed(Kind.PATCH)}
    assert sorted(found - listed) == [], "add these PATCH points to UPGRADE_CHECKLIST"
    assert sorted(listed - found) == [], "no longer replaced there: remove these points"


def _resolve(dotted: str) -> Any:
    """The object a dotted name names, importing the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("point", UPGRADE_CHECKLIST, ids=lambda p: f"{p.kind.value}:{p.ours[0]}")
def test_each_point_names_what_exists_on_both_sides(point: UpstreamPoint) -> None:
    for ours in point.ours:
        _resolve(ours)
    owner = _resolve(point.upstream.rsplit(".", 1)[0])
    # An attribute pynetdicom sets on instances exists only in its class's source.
    assert hasattr(owner, point.name) or (
        inspect.isclass(owner)
        and re.search(rf"self\.{re.escape(point.name)}\b", inspect.getsource(owner))
    ), f"{point.upstream} is gone from pynetdicom {pynetdicom.__version__}"


@pytest.mark.skipif(
    pynetdicom.__version__ != CHECKED_AGAINST,
    reason=f"the line numbers point into pynetdicom {CHECKED_AGAINST}",
)
@pytest.mark.parametrize("point", UPGRADE_CHECKLIST, ids=lambda p: f"{p.kind.value}:{p.ours[0]}")
def test_each_point_has_the_line_of_the_installed_pynetdicom(point: UpstreamPoint) -> None:
    module = _resolve(".".join(point.upstream.split(".")[:2]))
    line = Path(module.__file__).read_text().splitlines()[point.line - 1]
    assert re.search(rf"\b{re.escape(point.name)}\b", line), (
        f"{point.location} reads {line.strip()!r}: where is {point.upstream}?"
    )


def test_the_checklist_lists_each_point_once() -> None:
    keys = [(point.kind, point.upstream, point.ours) for point in UPGRADE_CHECKLIST]
    assert len(keys) == len(set(keys))
