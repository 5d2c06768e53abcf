"""Imports point down only, form no cycle and stay visible: an AST scan of every module of the package.

Layers, bottom to top: ``paths``/``machine`` and ``assets`` (assets may use ``paths`` and ``core.errors``) <- ``core``
<- ``models`` <- ``data`` and ``backend`` (the cloud's workers) <- ``eval``/``hpo`` and ``ros`` <- ``commands``/``cli``.
``core``, ``models``, ``data``, ``backend``, ``eval`` and ``hpo`` import no rclpy, no ROS message packages and no
generated ``edgesync_ros.msg``/``srv``, so the offline evaluator and the nodes share them without ROS. ``ros`` needs
nothing of the offline evaluation: the live run is scored by its own evaluator node from the bag's ground truth.
Own-package imports sit at the top of a file; one inside a function is deliberate laziness (ROS, torch, heavy
optional deps) and says so in a comment.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgesync_ros"
NAME = "edgesync_ros"
GENERATED = (f"{NAME}.msg", f"{NAME}.srv")

#: Layer of a module: the first matching prefix (``NAME.`` omitted), most specific first.
LAYERS: tuple[tuple[str, str], ...] = (
    ("paths", "paths"), ("machine", "paths"), ("assets", "assets"), ("core", "core"), ("models", "models"),
    ("data", "data"), ("backend", "backend"), ("eval", "eval"), ("hpo", "hpo"), ("ros", "ros"),
    ("commands", "commands"), ("cli", "commands"),
)
#: Layers each layer may import from (besides itself); ``None`` = anything.
ALLOWED: dict[str, tuple[str, ...] | None] = {
    "paths": (),
    "assets": ("paths",),
    "core": ("paths", "assets"),
    "models": ("paths", "assets", "core"),
    "data": ("paths", "assets", "core", "models"),
    "backend": ("paths", "assets", "core", "models"),
    "eval": ("paths", "assets", "core", "models", "data", "hpo"),
    "hpo": ("paths", "assets", "core", "models", "data", "eval"),
    "ros": ("paths", "assets", "core", "models", "data", "backend", "generated"),
    "commands": None,
}
#: Modules of a lower layer that a layer may use although the layer as a whole is out of bounds.
EXCEPTIONS: dict[str, tuple[str, ...]] = {"assets": (f"{NAME}.core.errors",)}
#: Layers that must not import ROS (rclpy, message packages, generated interfaces) or pickle.
ROS_FREE = ("paths", "assets", "core", "models", "data", "backend", "eval", "hpo")
ROS_MODULE = re.compile(r"^(rclpy|rcl_interfaces|rosidl_\w+|\w+_msgs|\w+_srvs)(\.|$)")
#: Extra third-party modules a layer must not import.
FORBIDDEN_EXTRA: dict[str, tuple[str, ...]] = {"core": ("pickle",)}


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's target as seen from a module of the package."""

    source: str  # importing module
    target: str  # imported module (own modules resolved to the module, not the imported name)
    line: int
    module_level: bool  # executed on import of ``source`` (not inside a function)
    commented: bool  # a comment on the statement's lines or the line above


def package_modules(root: Path) -> dict[str, Path]:
    """Module name -> file of every module under ``root`` (a package directory named like the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, known: set[str]) -> str:
    """The longest prefix of ``name`` below the package root that is a module (or generated); else ``name``."""
    parts = name.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in known or prefix in GENERATED:
            return prefix
    return name


def _is_reason(line: str) -> bool:
    """Whether ``line`` carries a comment that is more than a linter directive (``# noqa``, ``# type: ...``)."""
    _, hash_, comment = line.partition("#")
    return bool(hash_) and not re.match(r"\s*(noqa|type:|pragma)", comment) and bool(comment.strip())


def _function_level_nodes(tree: ast.Module) -> set[int]:
    nested = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    return nested


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """Every import of ``path`` (module ``module``), function-level ones included."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    nested = _function_level_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known | set(GENERATED) else base for a in node.names]
        else:
            continue
        previous = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        statement = lines[node.lineno - 1:node.end_lineno or node.lineno]
        commented = (previous.startswith("#") and _is_reason(previous)) or any(_is_reason(t) for t in statement)
        for target in dict.fromkeys(targets):
            out.append(Import(module, _resolve(target, known), node.lineno, id(node) not in nested, commented))
    return out


def scan(root: Path) -> dict[str, list[Import]]:
    """Module name -> its imports, for every module of the package at ``root``."""
    mods = package_modules(root)
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def layer_of(module: str) -> str | None:
    """The layer of an own module or generated interface; ``None`` for the package root or an unplaced module."""
    if module in GENERATED or module.startswith(tuple(g + "." for g in GENERATED)):
        return "generated"
    rest = module[len(NAME) + 1:] if module.startswith(NAME + ".") else ""
    for prefix, layer in LAYERS:
        if rest == prefix or rest.startswith(prefix + "."):
            return layer
    return None


def layer_violations(imports: list[Import]) -> list[str]:
    """Each import that points up, sideways out of bounds, or at ROS from a ROS-free layer."""
    bad = []
    for imp in imports:
        layer = layer_of(imp.source)
        if layer is None:
            continue
        own = imp.target == NAME or imp.target.startswith(NAME + ".")
        if own and imp.target != NAME:
            to = layer_of(imp.target)
            allowed = ALLOWED[layer]
            excepted = imp.target in EXCEPTIONS.get(layer, ())
            if allowed is not None and to != layer and to not in allowed and not excepted:
                bad.append(f"{imp.source}:{imp.line} ({layer}) imports {imp.target} ({to})")
        if layer in ROS_FREE and (ROS_MODULE.match(imp.target) or layer_of(imp.target) == "generated"):
            bad.append(f"{imp.source}:{imp.line} ({layer}) imports ROS: {imp.target}")
        if any(imp.target == f or imp.target.startswith(f + ".") for f in FORBIDDEN_EXTRA.get(layer, ())):
            bad.append(f"{imp.source}:{imp.line} ({layer}) imports {imp.target}")
    return bad


def import_cycles(scanned: dict[str, list[Import]]) -> list[list[str]]:
    """Cycles of the graph of module-level own-module imports (each cycle once, as a closed path)."""
    graph = {m: sorted({i.target for i in imps if i.module_level and i.target in scanned and i.target != m})
             for m, imps in scanned.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                cycles.append([*path[path.index(t):], t])
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def uncommented_lazy_imports(scanned: dict[str, list[Import]]) -> list[str]:
    """Own-module imports inside functions without a comment saying why they are lazy."""
    return [f"{i.source}:{i.line} imports {i.target} inside a function without a comment"
            for imps in scanned.values() for i in imps
            if not i.module_level and not i.commented and i.target.startswith(NAME + ".")]


SCANNED = scan(PACKAGE)


@pytest.mark.parametrize("module", sorted(SCANNED), ids=str)
def test_module_imports_only_downward(module: str):
    bad = layer_violations(SCANNED[module])
    assert not bad, "\n".join(bad)


def test_every_module_has_a_layer():
    unplaced = [m for m in SCANNED if m != NAME and layer_of(m) is None]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_module_level_imports_form_no_cycle():
    cycles = import_cycles(SCANNED)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_own_imports_say_why():
    bad = uncommented_lazy_imports(SCANNED)
    assert not bad, "\n".join(bad)


def test_the_scan_would_notice(tmp_path: Path):
    root = tmp_path / NAME
    files = {
        "__init__.py": "",
        "paths.py": "",
        "core/__init__.py": "",
        "core/errors.py": "",
        "core/bad.py": "import pickle\nfrom edgesync_ros.ros import runner\nimport rclpy.node\n",
        "models/__init__.py": "",
        "models/a.py": "from edgesync_ros.data import b\nfrom edgesync_ros.msg import HeadUpdate\n",
        "data/__init__.py": "",
        "data/b.py": "from . import c\n",
        "data/c.py": "from edgesync_ros.models import a\n\n\ndef f():\n    from edgesync_ros import paths\n",
        "ros/__init__.py": "",
        "ros/runner.py": "def g():\n    # lazy: the evaluation is heavy\n    from edgesync_ros.eval import x\n",
        "assets.py": "from edgesync_ros.core import errors\nfrom edgesync_ros.core import bad\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    scanned = scan(root)
    found = "\n".join(v for imps in scanned.values() for v in layer_violations(imps))
    for expected in ("core.bad:1 (core) imports pickle", "core.bad:2 (core) imports edgesync_ros.ros.runner",
                     "core.bad:3 (core) imports ROS: rclpy.node", "models.a:1 (models) imports edgesync_ros.data.b",
                     "models.a:2 (models) imports ROS: edgesync_ros.msg",
                     "ros.runner:3 (ros) imports edgesync_ros.eval", "assets:2 (assets) imports edgesync_ros.core.bad"):
        assert expected in found, found
    assert "assets:1" not in found and "data.c:1" not in found
    assert import_cycles(scanned) == [[f"{NAME}.data.b", f"{NAME}.data.c", f"{NAME}.models.a", f"{NAME}.data.b"]]
    assert uncommented_lazy_imports(scanned) == [f"{NAME}.data.c:5 imports {NAME}.paths inside a function without a "
                                                 "comment"]
