"""The import direction of docs/architecture.md, read from the code, so the document stays true."""

from __future__ import annotations

import ast
import re

from tests.helpers import REPO

PACKAGE = REPO / "nemo_rl_sweep"


def documented_levels() -> dict[str, int]:
    """Module -> level, from the table under "Which may import which" in docs/architecture.md."""
    text = (REPO / "docs" / "architecture.md").read_text()
    levels = {}
    for level, cells in re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.M):
        for name in re.findall(r"`([a-z_]+)`", cells):
            levels[name] = int(level)
    return levels


def imports_between_units() -> set[tuple[str, str]]:
    """(importer, imported) pairs between the library's top-level modules and packages."""
    pairs = set()
    for path in PACKAGE.rglob("*.py"):
        unit = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            parts = node.module.split(".")
            if parts[0] != "nemo_rl_sweep":
                continue
            targets = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            pairs.update((unit, t) for t in targets if t != unit)
    return pairs


def test_every_library_module_has_a_documented_level():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    units.discard("__init__")
    assert units - set(documented_levels()) == set()


def test_no_module_imports_a_module_above_it():
    levels = documented_levels()
    upward = sorted(
        f"{a} (level {levels[a]}) imports {b} (level {levels[b]})"
        for a, b in imports_between_units()
        if levels[b] >= levels[a]
    )
    assert upward == []


def test_the_library_imports_hydra_only_inside_the_functions_that_need_it():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                assert not any(n.split(".")[0] == "hydra" for n in names), path
