"""How the code is laid out: no module reaches into another's private names, no path hacks, every package installed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("meg_gym", "scripts", "baselines")


def python_files() -> list[Path]:
    return sorted(p for folder in CHECKED for p in (ROOT / folder).rglob("*.py") if "assets" not in p.parts)


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(path: Path) -> list[str]:
    """Imports of another module's private names, uses of a private attribute of an imported module, path hacks."""
    tree = ast.parse(path.read_text())
    where = path.relative_to(ROOT)
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{where}:{node.lineno} imports {alias.name} from {node.module}")
                modules.add(alias.asname or alias.name)
            if node.module and any(private(part) for part in node.module.split(".")):
                found.append(f"{where}:{node.lineno} imports from the private module {node.module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and private(node.attr):
            if node.value.id in modules:
                found.append(f"{where}:{node.lineno} uses {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            if (
                node.func.attr in ("insert", "append")
                and isinstance(target, ast.Attribute)
                and target.attr == "path"
                and isinstance(target.value, ast.Name)
                and target.value.id == "sys"
            ):
                found.append(f"{where}:{node.lineno} changes sys.path")
    return found


def test_no_private_cross_module_imports_uses_or_path_hacks():
    found = [v for path in python_files() for v in violations(path)]
    assert not found, "share through a public name instead:\n" + "\n".join(found)


def test_the_check_catches_each_kind(tmp_path, monkeypatch):
    bad = tmp_path / "meg_gym" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "import sys\nfrom meg_gym import codec as c\nfrom meg_gym.envs.power_control import _pipeline_for\n"
        "sys.path.insert(0, '.')\nc._check_blocks(1, 1)\nfrom meg_gym import __version__\n"
    )
    monkeypatch.setattr(sys_module(), "ROOT", tmp_path)
    found = violations(bad)
    assert len(found) == 3, found
    assert any("_pipeline_for" in f for f in found) and any("sys.path" in f for f in found)
    assert any("c._check_blocks" in f for f in found)


def sys_module():
    import sys

    return sys.modules[__name__]


def test_every_package_folder_is_installed():
    line = re.search(r"^packages = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    listed = set(re.findall(r'"([^"]+)"', line.group(1)))
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "meg_gym").rglob("__init__.py")}
    assert folders <= listed, f"add {sorted(folders - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "meg_gym_baselines" in listed
