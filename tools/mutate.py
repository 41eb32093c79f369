"""`make mutate`: mutation testing (mutmut) of the code the paper's numbers depend on, one module at a time.

    python tools/mutate.py                       # every module below, smallest first, then the score table
    python tools/mutate.py --module scoring      # one module
    python tools/mutate.py --report              # the score table of what has been run (mutants/*.meta)
    python tools/mutate.py --survivors           # list the surviving mutants (then: mutmut show NAME)
    python tools/mutate.py --save a.json         # keep this run's verdicts (mutmut resets them when the
    python tools/mutate.py --report --merge a.json b.json   # config changes); report several runs together

Each mutant runs only the tests (of pyproject's [tool.mutmut] selection) that call the mutated function,
with one worker (--max-children 1) and a per-mutant timeout (timeout_multiplier x the clean run's time +
timeout_constant). mutmut imports the package from mutants/: run without PYTHONPATH pointing at the
repository. docs/mutation.md has the scores, the command and the mutants judged equivalent.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# module -> mutant-name patterns: the functions that compute or carry the paper's numbers
MODULES = {
    "annotations (id rules)": ["avmaster_core.annotations.x_derived_question_id*",
                               "avmaster_core.annotations.x__as_int_id*", "avmaster_core.annotations.x__present*"],
    "atomic": ["avmaster_core.atomic.*"],
    "checkpoint": ["avmaster_core.checkpoint.*"],
    "model (combine, preference)": ["avmaster_core.model.x_combine_logits*",
                                    "avmaster_core.blocks.xǁPreferenceLayerǁforward*"],
    "losses": ["avmaster_core.losses.*"],
    "extract.video (time rules)": ["avmaster_core.extract.video.x__frame_time*",
                                   "avmaster_core.extract.video.x__decode_audio*"],
    "scoring": ["avmaster_core.scoring.*"],
}
# mutmut's exit codes: timeouts count as killed (mutmut's convention); "no tests" (no test reaches the
# mutated function) counts as survived
KILLED, SURVIVED = {1, 3, 36, 24, -24, 152, 255}, {0, 5, 33}


def exit_codes() -> dict[str, int | None]:
    codes = {}
    for meta in (REPO / "mutants").rglob("*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def of_module(codes: dict, patterns: list[str]) -> dict[str, int | None]:
    return {k: v for k, v in codes.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}


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
    for name, patterns in MODULES.items():
        mine = of_module(codes, patterns)
        killed = sum(v in KILLED for v in mine.values())
        survived = sum(v in SURVIVED for v in mine.values())
        run = killed + survived
        score = f"{100 * killed / run:.1f} %" if run else "-"
        lines.append(f"| {name} | {len(mine)} | {killed} | {survived} | {len(mine) - run} | {score} |")
    return "\n".join(lines)


def survivors(codes: dict) -> list[str]:
    return sorted(k for name, patterns in MODULES.items() for k, v in of_module(codes, patterns).items()
                  if v in SURVIVED)


def run(patterns: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the package must come from mutants/
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", "1", *patterns],
                          cwd=REPO, env=env).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=list(MODULES), help="only this module (repeatable)")
    parser.add_argument("--report", action="store_true", help="print the score table and stop")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants and stop")
    parser.add_argument("--save", metavar="JSON", help="write the current verdicts to JSON and stop")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="report/list from saved verdicts instead")
    args = parser.parse_args(argv)
    codes = merged(args.merge) if args.merge else exit_codes()
    if args.save:
        Path(args.save).write_text(json.dumps(codes, indent=0, sort_keys=True))
        return 0
    if args.survivors:
        print("\n".join(survivors(codes)))
        return 0
    if not args.report:
        for name in args.module or list(MODULES):
            print(f"[mutate] {name}", file=sys.stderr)
            if run(MODULES[name]) not in (0, 1):
                return 1
        codes = exit_codes()
    print(report(codes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
