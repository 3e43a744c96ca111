"""The direction of dependence the layout promises: engine/ and charts/ import nothing of Streamlit or the app."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {"engine": {"streamlit", "ui", "app_pages", "charts"}, "charts": {"streamlit", "ui", "app_pages", "engine"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_of_the_app(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 10  # the scan really walks the subpackages
    offenders = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert {f: bad for f, bad in offenders.items() if bad} == {}


def test_engine_is_grouped_in_subpackages():
    """Past ~25 modules the engine is grouped by capability (DESIGN.md): no loose modules at its top."""
    loose = [p.name for p in (ROOT / "engine").glob("*.py") if p.name != "__init__.py"]
    assert loose == []
