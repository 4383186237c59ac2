"""The package's floors: no import cycles, and lower layers never import higher ones (read from the source)."""

import ast
import os

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "jetcam_app")
FLOOR = ("config", "config_checks", "registry", "errors", "types", "verdict", "files", "regions")
# layer -> the layers it must not import (the frame's path: sources -> inference -> output; the commands on top)
FORBIDDEN = {
    "floor": ("sources", "inference", "output", "bench", "pipeline", "cli", "doctor"),
    "sources": ("inference", "output", "bench", "pipeline", "cli", "doctor"),
    "inference": ("sources", "output", "bench", "pipeline", "cli", "doctor"),
    "output": ("bench", "pipeline", "cli", "doctor"),
    "analytics": ("sources", "inference", "output", "bench", "pipeline", "cli", "doctor"),
}


def _modules():
    mods = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                is_pkg = dotted.endswith(".__init__")
                mods[dotted[:-9] if is_pkg else dotted] = (path, is_pkg)
    return mods


def _imports(mods):
    graph = {}
    for mod, (path, is_pkg) in mods.items():
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        deps = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base[:len(base) - node.level + 1] + ([node.module] if node.module else [])
                    target = ".".join(parts)
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = target + "." + alias.name
                    deps.add(full if full in mods else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = {d for d in deps if d in mods and d != mod and not mod.startswith(d + ".")}
    return graph


def _layer(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) == 1:
        return "package"
    return "floor" if parts[1] in FLOOR else parts[1]


def test_no_import_cycles():
    graph = _imports(_modules())
    seen, path_stack, cycles = set(), [], []

    def visit(mod):
        if mod in path_stack:
            cycles.append(path_stack[path_stack.index(mod):] + [mod])
            return
        if mod in seen:
            return
        seen.add(mod)
        path_stack.append(mod)
        for dep in sorted(graph[mod]):
            visit(dep)
        path_stack.pop()

    for mod in sorted(graph):
        visit(mod)
    assert not cycles, "import cycles: %s" % cycles


def test_lower_layers_never_import_higher_ones():
    graph = _imports(_modules())
    wrong = ["%s -> %s" % (mod, dep) for mod, deps in sorted(graph.items()) for dep in sorted(deps)
             if _layer(dep) in FORBIDDEN.get(_layer(mod), ())]
    assert not wrong, "imports against the layering: %s" % wrong
