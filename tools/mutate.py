"""`make mutate`: mutation testing (mutmut) of the code the paper's numbers depend on, one module at a time.

    python tools/mutate.py                       # every module below, then the score table
    python tools/mutate.py --module losses       # one module (repeatable)
    python tools/mutate.py --module losses --mutant NAME ...   # re-run these mutants (after adding a test)
    python tools/mutate.py --report              # the score table of what has been run
    python tools/mutate.py --survivors           # list the surviving mutants (then: --show NAME)
    python tools/mutate.py --show NAME           # the diff of one mutant (mutmut show, in its module's folder)
    python tools/mutate.py --save a.json         # keep the verdicts (mutmut resets a module's verdicts when
    python tools/mutate.py --report --merge a.json b.json   # its tests change); report several runs together

Each module runs in its own folder build/mutation/<module>/ (links to avmaster_core/ and tests/, and a
pyproject.toml made from the repository's [tool.mutmut] plus the module's own file and test selection), so a
mutant only ever runs the few fast test files that pin its module, and each module keeps its own verdicts.
Within those files mutmut runs only the tests that call the mutated function, each mutant in a fork of one
server process that has imported and collected everything once (see WARMUP), with one worker
(--max-children 1) and a CPU limit of (the tests' time + timeout_constant) x timeout_multiplier x 2 seconds.
mutmut imports the package from <folder>/mutants/: PYTHONPATH is removed from its environment.
docs/mutation.md has the scores, the commands and the mutants judged equivalent.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "mutation"


@dataclass(frozen=True)
class Module:
    folder_name: str            # build/mutation/<folder_name>/: its mutants, stats and verdicts
    sources: tuple[str, ...]    # the files mutmut mutates
    patterns: tuple[str, ...]   # mutant-name patterns: the functions that compute or carry the paper's numbers
    tests: tuple[str, ...]      # the fast test files (or test ids) that pin them
    beside: tuple[str, ...] = ()  # repository folders the tests read, copied beside the mutants (results/)

    @property
    def folder(self) -> Path:
        return WORK / self.folder_name


def _functions(module: str, *names: str) -> tuple[str, ...]:
    """mutmut's name patterns of these functions of `module` ("Class.method" for a method)."""
    return tuple(f"{module}.xǁ{n.replace('.', 'ǁ')}*" if "." in n else f"{module}.x_{n}__mutmut*" for n in names)


MODULES = {
    "annotations (id rules)": Module(
        "annotations", ("avmaster_core/data/annotations.py",),
        _functions("avmaster_core.data.annotations", "derived_question_id", "_as_int_id", "_present"),
        ("tests/test_annotation_ids.py", "tests/test_annotations.py",
         "tests/test_visible_skips.py::test_documented_derived_id_example_needs_no_shared_data")),
    "atomic": Module("atomic", ("avmaster_core/core/atomic.py",), ("avmaster_core.core.atomic.*",),
                     ("tests/test_atomic.py", "tests/test_atomic_contract.py")),
    "checkpoint": Module("checkpoint", ("avmaster_core/core/checkpoint.py",), ("avmaster_core.core.checkpoint.*",),
                         ("tests/test_checkpoint_io.py", "tests/test_atomic.py")),
    "model (combine, preference)": Module(
        "model", ("avmaster_core/core/model.py", "avmaster_core/core/blocks.py"),
        ("avmaster_core.core.model.x_combine_logits*", "avmaster_core.core.blocks.xǁPreferenceLayerǁforward*"),
        ("tests/test_combine_preference.py", "tests/test_model.py::test_combine_modes_and_table12",
         "tests/test_choices.py::test_answer_heads_trained_leaves_out_zero_weight_heads")),
    "losses": Module("losses", ("avmaster_core/core/losses.py",), ("avmaster_core.core.losses.*",),
                     ("tests/test_losses.py",)),
    "extract.video (time rules)": Module(
        "extract_video", ("avmaster_core/extract/video.py",),
        _functions("avmaster_core.extract.video", "_frame_time", "_decode_audio"),
        ("tests/test_extract_time_rules.py", "tests/test_extract_video.py", "tests/test_extract_official_route.py")),
    "scoring": Module("scoring", ("avmaster_core/data/scoring.py",), ("avmaster_core.data.scoring.*",),
                      ("tests/test_scoring.py", "tests/test_scoring_contract.py")),
    # issue 28: every other module whose code changes a number, a table, a plan or a figure
    "choices": Module("choices", ("avmaster_core/core/choices.py",), ("avmaster_core.core.choices.*",),
                      ("tests/test_formulas.py", "tests/test_choice_inputs.py",
                       "tests/test_choices.py::test_missing_or_malformed_choices_are_named",
                       "tests/test_choices.py::test_avqa_experiments")),
    "experiments": Module("experiments", ("avmaster_core/core/experiments.py",), ("avmaster_core.core.experiments.*",),
                          ("tests/test_experiment_registry.py", "tests/test_experiments.py")),
    "ours_tables": Module("ours_tables", ("avmaster_core/results/ours_tables.py",),
                          ("avmaster_core.results.ours_tables.*",),
                          ("tests/test_ours_tables.py", "tests/test_findings.py",
                           "tests/test_notebook_params_full.py::test_rows_and_stand_in_rows_average_exactly_the_seeds_given")),
    "findings": Module("findings", ("avmaster_core/results/findings.py",),
                       _functions("avmaster_core.results.findings", "paired_gap", "gap_verdict", "seed_values",
                                  "compare_rows", "_paper_difference", "_ranking", "_concordance"),
                       ("tests/test_findings_numbers.py", "tests/test_findings.py")),
    "reproduce plan": Module(
        "plan", ("avmaster_core/reproduction/plan.py",),
        _functions("avmaster_core.reproduction.plan", "artefacts", "dataset_tables", "not_yet", "dataset_cells", "cells",
                   "select_artefacts", "build_plan", "_artefact_specs", "_add_run_items", "_add_feature_items",
                   "_splits_used", "_add_question_items", "Plan.item_list", "Plan.artefact_items"),
        ("tests/test_plan_counts.py", "tests/test_reproduce.py")),
    "notebook_params": Module(
        "notebook_params", ("avmaster_core/results/notebook_params.py",),
        _functions("avmaster_core.results.notebook_params", "notebook_settings", "_seeds", "_int_list", "_epochs",
                   "_smoke_changes", "changed_parameters", "NotebookSettings.runs", "NotebookSettings.train_config",
                   "NotebookSettings.data_config", "NotebookSettings.ensure_data", "NotebookSettings.train_dir",
                   "NotebookSettings.run_name"),
        ("tests/test_notebook_params_full.py", "tests/test_notebooks_runner.py"), beside=("results",)),
    "dataset (batches, negatives, word mask)": Module(
        "dataset", ("avmaster_core/core/dataset.py",),
        _functions("avmaster_core.core.dataset", "_rng", "draw_negatives", "negative_indices", "epoch_permutation",
                   "epoch_order", "question_tokens", "word_mask", "FeatureBank.gather", "FeatureBank._audio_rows",
                   "Batches.__init__", "Batches.__len__", "Batches._gathered", "iterate_batches", "_fit_length"),
        ("tests/test_dataset_rules.py",)),
    "engine (schedule, checkpoint choice)": Module(
        "engine", ("avmaster_core/training/engine.py",),
        _functions("avmaster_core.training.engine", "end_of_epoch", "restore", "build_model_and_optimizer",
                   "LoopState.as_dict", "LoopState.from_saved"),
        ("tests/test_engine_rules.py",)),
    "evaluation": Module("evaluation", ("avmaster_core/training/evaluation.py",),
                         _functions("avmaster_core.training.evaluation", "predict", "accuracy", "prediction_series"),
                         ("tests/test_distributed_units.py",)),
    "distributed": Module("distributed", ("avmaster_core/training/distributed.py",),
                          ("avmaster_core.training.distributed.*",), ("tests/test_distributed_units.py",)),
}
# mutmut's exit codes: timeouts count as killed (mutmut's convention); "no tests" (no test reaches the
# mutated function) counts as survived
KILLED, SURVIVED = {1, 3, 36, 24, -24, 152, 255}, {0, 5, 33}


# pytest loads this conftest.py (copied to the root of mutants/) in mutmut's fork server, before the forked
# workers: what it imports is shared by every mutant instead of loaded again in each. torch.testing.assert_close
# imports sympy on its first call (~0.8 s of CPU, more than most tests here take).
WARMUP = '''"""Written by tools/mutate.py: imports once, in mutmut's fork server, what each mutant would load again."""
import torch

torch.testing.assert_close(torch.zeros(1), torch.zeros(1))
'''


def _toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans read back the same in TOML


def prepare(module: Module) -> Path:
    """The module's folder: links to the package and the tests, and its own [tool.mutmut] section."""
    shared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    settings = {**shared, "source_paths": ["avmaster_core/"], "only_mutate": list(module.sources),
                "pytest_add_cli_args": [*shared.get("pytest_add_cli_args", []), "-m", "not slow"],
                "pytest_add_cli_args_test_selection": list(module.tests),
                "also_copy": ["conftest.py", "notebooks", *module.beside]}
    module.folder.mkdir(parents=True, exist_ok=True)
    for name in ("avmaster_core", "tests", "notebooks", *module.beside):  # notebooks/: the plan and notebook tests
        link = module.folder / name
        if not link.is_symlink():
            link.symlink_to(REPO / name, target_is_directory=True)
    if not (module.folder / "conftest.py").is_file() or (module.folder / "conftest.py").read_text() != WARMUP:
        (module.folder / "conftest.py").write_text(WARMUP)
    text = "[tool.mutmut]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items())
    pyproject = module.folder / "pyproject.toml"
    if not pyproject.is_file() or pyproject.read_text() != text:  # a new test selection resets the verdicts
        pyproject.write_text(text)
    return module.folder


def run(module: Module, names: list[str] | None = None) -> int:
    folder = prepare(module)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the package must come from mutants/
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("AVMASTER_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    if names:  # mutmut maps tests to functions once and then only adds new tests: an assertion added to an
        (folder / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # existing test would go unseen
    mutmut = Path(sys.executable).parent / "mutmut"  # the script, not `python -m` (mutmut re-imports itself)
    return subprocess.run([str(mutmut), "run", "--max-children", "1", *(names or module.patterns)],
                          cwd=folder, env=env).returncode


def exit_codes() -> dict[str, int | None]:
    codes = {}
    for meta in WORK.glob("*/mutants/**/*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def of_module(codes: dict, module: Module) -> dict[str, int | None]:
    return {k: v for k, v in codes.items() if any(fnmatch.fnmatchcase(k, p) for p in module.patterns)}


def merged(paths: list[str]) -> dict[str, int | None]:
    """Verdicts of saved runs, later files winning where they decided a mutant (same sources assumed)."""
    codes: dict = {}
    for path in paths:
        for key, code in json.loads(Path(path).read_text()).items():
            if code is not None or key not in codes:
                codes[key] = code
    return codes


def report(codes: dict) -> str:
    lines = ["| module | mutants | killed | survived | not run | score |", "|---|---|---|---|---|---|"]
    for name, module in MODULES.items():
        mine = of_module(codes, module)
        killed = sum(v in KILLED for v in mine.values())
        survived = sum(v in SURVIVED for v in mine.values())
        ran = killed + survived
        score = f"{100 * killed / ran:.1f} %" if ran else "-"
        lines.append(f"| {name} | {len(mine)} | {killed} | {survived} | {len(mine) - ran} | {score} |")
    return "\n".join(lines)


def survivors(codes: dict) -> list[str]:
    return sorted(k for module in MODULES.values() for k, v in of_module(codes, module).items() if v in SURVIVED)


def show(name: str) -> int:
    module = next((m for m in MODULES.values() if any(fnmatch.fnmatchcase(name, p) for p in m.patterns)), None)
    if module is None:
        print(f"no module of tools/mutate.py owns mutant {name!r}; see --survivors for the names", file=sys.stderr)
        return 1
    return subprocess.run([str(Path(sys.executable).parent / "mutmut"), "show", name], cwd=prepare(module)).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=list(MODULES), help="only this module (repeatable)")
    parser.add_argument("--mutant", nargs="+", metavar="NAME", help="re-run these mutants of the one --module")
    parser.add_argument("--report", action="store_true", help="print the score table and stop")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants and stop")
    parser.add_argument("--show", metavar="NAME", help="print one mutant's diff and stop")
    parser.add_argument("--save", metavar="JSON", help="write the current verdicts to JSON and stop")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="report/list from saved verdicts instead")
    args = parser.parse_args(argv)
    if args.show:
        return show(args.show)
    codes = merged(args.merge) if args.merge else exit_codes()
    if args.save:
        Path(args.save).write_text(json.dumps(codes, indent=0, sort_keys=True))
        return 0
    if args.survivors:
        print("\n".join(survivors(codes)))
        return 0
    if args.mutant and len(args.module or []) != 1:
        parser.error("--mutant needs exactly one --module (the module the mutants belong to)")
    if not args.report:
        for name in args.module or list(MODULES):
            print(f"[mutate] {name}", file=sys.stderr)
            if run(MODULES[name], args.mutant) not in (0, 1):
                return 1
        codes = exit_codes()
    print(report(codes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
