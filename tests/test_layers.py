"""The apps' import graph: module-level imports go one way only (accounts, then checkpoints and endpoints, then
inferences; esd, the wire and project layer, imports no app), and no module imports itself back in a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("accounts", "checkpoints", "endpoints", "inferences", "esd")
ALLOWED = {
    "accounts": {"esd"},
    "checkpoints": {"accounts", "esd"},
    "endpoints": {"accounts", "esd"},
    "inferences": {"accounts", "checkpoints", "endpoints", "esd"},
    "esd": set(),
}
# The URL configuration is the composition root: it mounts every app's routes.
COMPOSITION_ROOTS = {"esd.urls"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path for app in APPS for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts
    }


def module_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports when it is imported (not those imported inside functions)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in known and target != name)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: module_level_imports(name, path, set(modules)) for name, path in modules.items()}


def test_apps_import_only_in_the_designs_direction():
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        if source not in COMPOSITION_ROOTS
        for target in targets
        if (app := source.split(".")[0]) != (other := target.split(".")[0]) and other not in ALLOWED[app]
    )
    assert wrong == []


def test_no_module_level_import_cycle():
    edges = graph()
    cycles = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []
