"""The package's imports: no circle, no private name across subpackages, public HyperSpy only.

A circle (``a`` imports ``b`` and ``b`` imports ``a``, even inside a
function) means two modules share one idea: the layout should show the
pipeline as a one-way flow from features to fusion to clustering to signals.
A private name (``_x``) or private module used by another subpackage is a
hidden interface; the package's top-level private modules (``_arrays``,
``_validation`` ...) are its shared internals and export public names only.
HyperSpy is reached through ``hyperspy.api`` and ``hyperspy.signals``, the
names it promises to keep.
"""

import ast
import collections
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stemfuse_hs"


def _module_names():
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def _resolve(node, package):
    """The absolute module an ``ImportFrom`` node names."""
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def _import_nodes():
    """``(importing module, ImportFrom/Import node, absolute target)`` for every import in the package."""
    for name, path in _module_names().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                yield name, node, _resolve(node, package)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, node, alias.name


def _subpackage(module):
    """``"features"`` for ``stemfuse_hs.features.sdt``; ``""`` for a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def _is_private(part):
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports_across_subpackages():
    """``["importer: from target import name"]`` for each private name or module reached from another subpackage."""
    modules = _module_names()
    found = []
    for name, node, target in _import_nodes():
        if not isinstance(node, ast.ImportFrom) or target.split(".")[0] != "stemfuse_hs":
            continue
        for alias in node.names:
            module = f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target
            if _subpackage(module) == _subpackage(name):
                continue
            inside = module.split(".")[2:] if _subpackage(module) else []
            top_level_module = module != target and not _subpackage(module)
            if any(_is_private(p) for p in inside) or (_is_private(alias.name) and not top_level_module):
                found.append(f"{name}: from {target} import {alias.name}")
    return found


#: What HyperSpy documents as its public import paths.
PUBLIC_HYPERSPY = ("hyperspy.api", "hyperspy.signals")

#: The one exception, and why: ``set_signal_type`` cannot type a feature
#: signal of one feature (HyperSpy counts a size-1 signal axis as signal
#: dimension 0); ``assign_signal_subclass`` takes the dimension as given.
HYPERSPY_EXCEPTIONS = {"stemfuse_hs.signals._axes: hyperspy.io"}


def hyperspy_imports_outside_the_api():
    return sorted(
        f"{name}: {target}"
        for name, node, target in _import_nodes()
        if target.split(".")[0] == "hyperspy" and target not in PUBLIC_HYPERSPY
    )



def import_edges():
    """``{module: {modules it imports anywhere in its body}}`` within the package."""
    modules = _module_names()
    edges = collections.defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # "from package import module" imports the module; "from
                # module import name" the module itself.
                submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules]
                candidates = submodules or [target]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            edges[name].update(c for c in candidates if c in modules and c != name)
    return edges


def import_circles(edges):
    """Every cycle of modules, as the sorted list of the modules on it (Tarjan's components)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return circles


def test_the_checker_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    edges = import_edges()
    assert "stemfuse_hs.fusion" in edges["stemfuse_hs.signals.fuse"]  # the scan sees real imports
    assert import_circles(edges) == []


def test_no_private_name_crosses_a_subpackage():
    assert private_imports_across_subpackages() == []


def test_hyperspy_is_imported_through_its_public_api_only():
    assert [found for found in hyperspy_imports_outside_the_api() if found not in HYPERSPY_EXCEPTIONS] == []
