"""The architecture the layout promises: compute and the dashboard meet only in the torch-free contract (which holds
the catalog, the queries and the figures both use), never through each other, a command module or printed output,
and each shared name is defined once."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Literals of the shared contract that used to be written on both sides; now only contract/ may spell them.
CONTRACT_LITERALS = ['"edit.json"', '"eval.json"', '"status.json"', '"weights.safetensors"', '"units.safetensors"',
                     '("style", "objects", "facts", "color")', '"trace-unet"', '"trace-text"', "'locogen'",
                     "'trace-", "normalized_drop DESC, window_start"]


def _python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name.removeprefix("locolab.") for name in found}


def _from(path: Path, package: str) -> set[str]:
    return {name for name in _imports(path) if name == package or name.startswith(f"{package}.")}


@pytest.mark.parametrize("path", _python_files("dashboard"), ids=lambda p: str(p.relative_to(REPO)))
def test_the_dashboard_imports_no_compute_module(path):
    assert not _from(path, "compute")


@pytest.mark.parametrize("path", _python_files("compute"), ids=lambda p: str(p.relative_to(REPO)))
def test_compute_imports_no_dashboard_module(path):
    assert not _from(path, "dashboard")


@pytest.mark.parametrize("path", _python_files("dashboard"), ids=lambda p: str(p.relative_to(REPO)))
def test_the_dashboard_does_not_parse_printed_output(path):
    assert "re" not in _imports(path), "jobs report through --status-file (contract.names.JOB_STATUS)"


@pytest.mark.parametrize("literal", CONTRACT_LITERALS)
def test_a_shared_name_is_spelled_only_in_the_contract(literal):
    spelled = [str(path.relative_to(REPO)) for path in _python_files("compute", "dashboard", "bench")
               if literal in path.read_text()]
    assert not spelled, f"{literal} is spelled outside contract/: {spelled}"


def test_the_contract_defines_the_shared_names():
    from locolab.contract import names, summaries

    assert names.FAMILIES[:4] == ("style", "objects", "facts", "color")
    assert (names.EDIT_RECORD, names.EDIT_SUMMARY, names.JOB_STATUS) == ("edit.json", "eval.json", "status.json")
    assert (names.LOCOGEN, names.TRACE_UNET, names.TRACE_TEXT) == ("locogen", "trace-unet", "trace-text")
    assert "normalized_drop DESC, window_start" in summaries.minimal_windows_sql("SELECT 1", "concept")


def test_the_contract_imports_nothing_from_compute_or_the_dashboard():
    for path in _python_files("contract"):
        assert not {name.split(".")[0] for name in _imports(path)} & {"compute", "dashboard", "torch"}, path


@pytest.mark.slow
def test_every_contract_and_dashboard_module_imports_without_torch():
    """What the imports above promise, at run time: importing every module of the contract and the dashboard (the
    page scripts under views/ run only under Streamlit) loads neither torch nor any compute module."""
    modules = [".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for path in _python_files("contract", "dashboard") if path.parent.name != "views"
               and path.name != "main.py"]
    code = (f"import importlib, sys\nfor name in {modules!r}: importlib.import_module(name)\n"
            "print(sorted(name for name in sys.modules if name == 'torch' or name.split('.')[0] == 'compute'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert len(modules) > 20
