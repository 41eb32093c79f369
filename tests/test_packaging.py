"""The project's set-up files agree with each other."""
from __future__ import annotations

import re
import tomllib

from conftest import REPO


def _name(requirement: str) -> str:
    """A distribution's normalised name (PEP 503) from a requirement or pin line."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9_.\-]+)", requirement).group(1)).lower()


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _requirements() -> dict[str, list[str]]:
    """{"core": [...], extra: [...]}: pyproject.toml's requirements (extras that name the project left out)."""
    project = _project()
    extras = {k: [r for r in v if _name(r) != "avmaster-core"] for k, v in project["optional-dependencies"].items()}
    return {"core": project["dependencies"], **extras}


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in (REPO / path).read_text().splitlines():
        m = re.match(r"\s*(?:-\s*)?([A-Za-z0-9_.\-]+)==(\S+)\s*$", line)
        if m:
            pins[_name(m.group(1))] = m.group(2)
    return pins


def test_the_core_needs_only_torch_numpy_and_h5py():
    assert {_name(r) for r in _requirements()["core"]} == {"torch", "numpy", "h5py"}


def test_pyproject_states_ranges_and_the_constraints_file_exact_versions():
    from packaging.requirements import Requirement

    constraints = _pins("constraints.txt")
    for extra, requirements in _requirements().items():
        for text in requirements:
            req = Requirement(text)
            assert "==" not in text and req.specifier, f"{extra}: {text} should be a compatible range"
            assert _name(text) in constraints, f"{extra}: {text} has no exact version in constraints.txt"
            assert req.specifier.contains(constraints[_name(text)]), (text, constraints[_name(text)])


def test_environment_yml_pins_every_requirement_at_the_constraints_version():
    constraints, environment = _pins("constraints.txt"), _pins("environment.yml")
    named = {_name(r) for requirements in _requirements().values() for r in requirements}
    assert set(environment) == named
    assert {n: constraints[n] for n in environment} == environment


def test_make_installs_every_extra_from_the_constraints_file():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r'pip install -c constraints\.txt -e "\.\[all\]"', makefile)
    assert "constraints.txt" in makefile.split("$(STAMP):")[1].splitlines()[0]  # a new pin reinstalls
    extras = set(_project()["optional-dependencies"]) - {"all"}
    assert all(e in _project()["optional-dependencies"]["all"][0] for e in extras)


def test_environment_yml_uses_python_311():
    assert re.search(r"^\s*-\s*python=3\.11\s*$", (REPO / "environment.yml").read_text(), re.M)


def test_named_dependencies_are_declared():
    pins = _pins("environment.yml")
    for name in ("torch", "torchvision", "open-clip-torch", "torchvggish", "soundfile", "av", "h5py", "pandas",
                 "seaborn", "matplotlib", "tqdm", "jupyterlab", "ipykernel", "papermill", "nbval", "pytest"):
        assert name in pins, name


def test_readme_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert blocks and blocks[0].split() == ["make", "demo", "make", "test"], blocks[:1]


def test_make_test_runs_parallel_workers_with_the_suites_scopes():
    from conftest import ONE_WORKER_MODULES, xdist_scope

    makefile = (REPO / "Makefile").read_text()
    for target in ("test:", "test-fast:"):
        assert "$(PARALLEL)" in makefile.split(f"\n{target}")[1].split("\n\n")[0], target
    assert "PARALLEL := -n $(TEST_WORKERS) --dist loadscope" in makefile
    assert all((REPO / "tests" / name).is_file() for name in ONE_WORKER_MODULES)  # renamed modules are noticed
    assert xdist_scope("notebooks/03_training.ipynb::Cell 4") == "notebooks/03_training.ipynb"
    assert xdist_scope("tests/test_report.py::test_the_site_works_over_http") == "tests/test_report.py"
    assert xdist_scope("tests/test_bad_input.py::test_x[a-b]") == "tests/test_bad_input.py::test_x[a-b]"


def test_ci_calls_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_cli_help_lists_commands(run_cli):
    out = run_cli("--help")
    assert "avmaster" in out and "<command>" in out
