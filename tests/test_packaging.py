"""The project's set-up files agree with each other."""
from __future__ import annotations

import re
import tomllib

from conftest import REPO


def _pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps)


def _environment_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "environment.yml").read_text().splitlines():
        m = re.match(r"\s*-\s*([A-Za-z0-9_.\-]+)==(\S+)\s*$", line)
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def test_every_dependency_is_pinned_exactly():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all(d.count("==") == 1 for d in deps), [d for d in deps if "==" not in d]


def test_environment_yml_mirrors_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_environment_yml_uses_python_311():
    assert re.search(r"^\s*-\s*python=3\.11\s*$", (REPO / "environment.yml").read_text(), re.M)


def test_named_dependencies_are_declared():
    pins = _pyproject_pins()
    for name in ("torch", "torchvision", "open-clip-torch", "torchvggish", "soundfile", "av", "h5py", "pandas",
                 "seaborn", "matplotlib", "tqdm", "jupyterlab", "ipykernel", "papermill", "nbval", "pytest"):
        assert name in pins, name


def test_readme_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert blocks and blocks[0].split() == ["make", "demo", "make", "test"], blocks[:1]


def test_ci_calls_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_cli_help_lists_commands(run_cli):
    out = run_cli("--help")
    assert "avmaster" in out and "<command>" in out
