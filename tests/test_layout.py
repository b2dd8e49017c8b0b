"""The maths a student reads with the chapters imports nothing from the course and run machinery.

The README's ``vaelib`` section lists the two groups; this test parses every core module's imports
with ``ast`` (no import is executed) and fails when one reaches outside the core.
"""

import ast
from pathlib import Path

import vaelib

PACKAGE = Path(vaelib.__file__).parent

#: The maths you read with the chapters (README: "the maths you read with the chapters").
CORE = {"protocols", "checks", "gaussian", "kl", "toy", "estimators", "objectives", "gradients",
        "likelihoods", "vae", "flows", "gaps"}
#: What the core may import besides itself.
THIRD_PARTY = {"torch", "math", "dataclasses", "typing", "collections", "__future__"}


def vaelib_imports(path: Path) -> set[str]:
    """The vaelib modules a file imports (``from .x import``, ``from vaelib.x import``, ...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "vaelib":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("vaelib."))
    return found


def other_imports(path: Path) -> set[str]:
    """The top-level names of the non-vaelib modules a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found - {"vaelib"}


def test_every_listed_module_exists():
    assert all((PACKAGE / f"{name}.py").is_file() for name in CORE)


def test_the_core_imports_only_the_core():
    leaks = {name: sorted(vaelib_imports(PACKAGE / f"{name}.py") - CORE) for name in CORE}
    assert not {name: bad for name, bad in leaks.items() if bad}, (
        f"core modules import course machinery: {leaks}; move the shared code into the core or "
        "the import out of it (see the README's vaelib section)")


def test_the_core_needs_only_torch_and_the_standard_library():
    outside = {name: sorted(other_imports(PACKAGE / f"{name}.py") - THIRD_PARTY) for name in CORE}
    assert not {name: bad for name, bad in outside.items() if bad}, outside


def test_the_parser_sees_a_leak(tmp_path):
    leaky = tmp_path / "leaky.py"
    leaky.write_text("from .device import default_device\nfrom vaelib.figures import COLORS\n"
                     "import vaelib.train\nfrom . import data\n")
    assert vaelib_imports(leaky) == {"device", "figures", "train", "data"}
