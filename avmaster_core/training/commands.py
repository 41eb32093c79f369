"""The `avmaster train | evaluate | score` commands, and command-line options built from the run configs.

Every TrainConfig/DataConfig field with a "flag" in its metadata (run_config) is one option, declared once:
`add_config_arguments` adds them to a parser (train and sweep share them) and `config_from_args` turns the
parsed values back into the dataclass, leaving the dataclass default for every option not given.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ..core import experiments
from ..core.atomic import atomic_write
from ..core.checkpoint import read_checkpoint
from ..core.config import PRESET_TRAINING, SIZES, ModelConfig, check_inference_changes, parse_override
from ..core.experiments import EXPERIMENT_SEGMENTS
from ..core.options import AT_LEAST_1, value_type
from ..core.run_reads import note_run_read
from ..data.annotations import load_records
from ..data.scoring import check_prediction_target, read_prediction_file, score, write_predictions
from .engine import train
from .evaluation import evaluate
from .precision import PRECISION_HELP, PRECISIONS
from .preflight import check_run_inputs, splits_of
from .provenance import save_table
from .run_config import DataConfig, TrainConfig, run_name


# ------------------------------------------------------------------------------------- options from dataclasses
def add_config_arguments(parser: argparse.ArgumentParser, cls, *, skip=(), required=(), helps=None) -> None:
    """One option per field of the dataclass `cls` that has a "flag" in its metadata (except `skip`).

    Every option defaults to None (= the dataclass default, shown in the help). Booleans are switches that
    set the opposite of the default ("negate" fields, e.g. --no-progress). A field's declared range
    (options.Range, metadata "range") is the option's type: a value out of range is refused while parsing.
    helps: {field: help} overrides."""
    helps = helps or {}
    for f in dataclasses.fields(cls):
        flag = f.metadata.get("flag")
        if not flag or f.name in skip:
            continue
        text = helps.get(f.name, f.metadata["help"])
        kwargs = {"dest": f.name, "default": None}
        if isinstance(f.default, bool):
            kwargs.update(action="store_const", const=not f.default)
        else:
            if f.default is not None and f.name not in helps and f.metadata.get("show_default", True):
                text += f" (default {f.default})"
            kwargs.update(type=f.metadata.get("range") or value_type(cls, f.name)[0], required=f.name in required)
            for key in ("choices", "metavar"):
                if key in f.metadata:
                    kwargs[key] = f.metadata[key]
        parser.add_argument(flag, help=text.replace("%", "%%"), **kwargs)


def config_values(cls, args: argparse.Namespace) -> dict:
    """{field: value} of the options of `cls` that were given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.metadata.get("flag") and getattr(args, f.name, None) is not None}


def config_from_args(cls, args: argparse.Namespace, **fixed):
    """The dataclass `cls` from parsed options (dataclass defaults for those not given), plus `fixed` fields."""
    return cls(**{**config_values(cls, args), **fixed})


def train_config_for(preset: str, args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed options; options not given take the preset's recipe (config.PRESET_TRAINING:
    the paper preset trains with batch 32), then TrainConfig's defaults (the released recipe)."""
    return TrainConfig(**{**PRESET_TRAINING[preset], **config_values(TrainConfig, args)})


# ------------------------------------------------------------------------------------------- model options
def parse_overrides(items: list[str] | None) -> dict:
    """["dim=64", "use_tdpp=false"] -> {"dim": 64, "use_tdpp": False}: each value read by its ModelConfig
    field's declared type, choices and range (config.parse_override); a ValueError names the field, the text
    and what is allowed."""
    changes = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects FIELD=VALUE (a ModelConfig field), got {item!r}")
        changes[key.strip()] = parse_override(key.strip(), text)
    return changes


def override_option(item: str) -> str:
    """argparse `type` of --set: `item` unchanged once it parses (parse_overrides), so that a bad override is
    refused with the other bad options, while the command line is read."""
    try:
        parse_overrides([item])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--set ")) from None
    return item


def model_config_for(experiment: str, preset: str, overrides: list[str] | None, size: str = "full"):
    """The ModelConfig of a named experiment on a preset and size, with --set changes."""
    try:
        model_cfg = experiments.experiment(experiment, preset, size)
    except KeyError as e:
        raise SystemExit(f"--experiment: {e.args[0]}") from None
    return dataclasses.replace(model_cfg, **parse_overrides(overrides))


def run_name_with_overrides(experiment: str, preset: str, overrides: list[str] | None) -> str:
    """The run folder name (run_config.run_name), + a suffix for --set changes, each spelt as its parsed value
    (`use_tdpp=False` and `use_tdpp=0` are one run: `+use_tdpp=false`)."""
    name = run_name(experiment, preset)
    if overrides:
        changes = parse_overrides(overrides)
        name += "+" + ",".join(sorted(f"{k}={v if isinstance(v, str) else json.dumps(v)}".replace("/", "_")
                                      for k, v in changes.items()))
    return name


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--preset and --size: which variant of each named experiment is built (train and sweep)."""
    p.add_argument("--preset", default="official", choices=("official", "paper"),
                   help="build the experiment(s) on the released code's preset or the paper's (default official; "
                        "paper-preset runs go to paper/<experiment>)")
    p.add_argument("--size", default="full", choices=tuple(SIZES),
                   help="model size (avmaster_core.core.config.SIZES): full (default) or cpu (dim 64, CPU-trainable)")


_TRAIN_EPILOG = """\
examples:
  # about a minute on one CPU core: a narrow model on the bundled synthetic benchmark
  avmaster synth --out data/synthetic
  avmaster train --dataset synthetic --root data/synthetic --device cpu --epochs 3 --lr 1e-3 \\
      --set dim=64 --set focus_ffn=128 --name smoke
  # this should give: test accuracy 52.1 % (question-only rule 41.2 %, a trained question-only model 39.5 %), ~200 samples/s

  # the paper's main result (Table II, official recipe) on one GPU, from official-protocol features
  avmaster train --experiment default --dataset music_avqa --root data/music_avqa \\
      --store data/music_avqa/features.h5 --device cuda

  # an ablation (Table VII, w/o TDPP), seed 2, and the paper-as-written preset
  avmaster train --experiment table7/wo_tdpp --seed 2 --dataset music_avqa --root data/music_avqa
  avmaster train --preset paper --dataset music_avqa --root data/music_avqa

  # continue an interrupted run: the same command plus --resume
  avmaster train --experiment default --dataset music_avqa --root data/music_avqa --device cuda --resume

  # 4 GPUs on one machine (the batch size is per GPU: 4 x 16 = 64)
  torchrun --nproc_per_node 4 -m avmaster_core.cli train --dataset music_avqa \\
      --root data/music_avqa --batch-size 16

Each run writes <out>/<name>/<seed>/: config.json (with its provenance: commit, config hash, data), metrics.jsonl (one line per epoch), best.pt,
last.pt, predictions.json, test_table.csv (the paper's table layout) and summary.json.
"""

_EVALUATE_EPILOG = """\
examples:
  avmaster evaluate --checkpoint results/runs/default/1/best.pt --dataset music_avqa --split test \\
      --root data/music_avqa --out results/eval/default
  avmaster evaluate --checkpoint results/runs/smoke/1/best.pt --dataset synthetic --root data/synthetic

  # Table XII "w/o APE": the same weights, the audio preference head left out of the answer
  avmaster evaluate --checkpoint results/runs/default/1/best.pt --dataset music_avqa --root data/music_avqa \\
      --set inference_use_a=false --out results/eval/table12_wo_ape

  # the same checkpoint on MUSIC-AVQA-R (trained on MUSIC-AVQA)
  avmaster evaluate --checkpoint results/runs/default/1/best.pt --dataset music_avqa_r --split test \\
      --root data/music_avqa_r --store data/music_avqa/features.h5
"""

_SCORE_EPILOG = """\
examples:
  avmaster score --dataset music_avqa --split test --root data/music_avqa \\
      --predictions results/runs/default/1/predictions.json --out results/table2_ours.csv
"""


# ------------------------------------------------------------------------------------------------ commands
def _train_command(args) -> int:
    model_cfg = model_config_for(args.experiment, args.preset, args.set, args.size)
    train_cfg = train_config_for(args.preset, args)
    data_cfg = config_from_args(DataConfig, args)
    if data_cfg.T is None and args.experiment in EXPERIMENT_SEGMENTS:  # Fig. 4 fixes T at the data level
        data_cfg = dataclasses.replace(data_cfg, T=EXPERIMENT_SEGMENTS[args.experiment])
    check_run_inputs(data_cfg, model_cfg, splits_of(train_cfg, data_cfg))  # every split, before epoch 1
    result = train(model_cfg, train_cfg, data_cfg, out_dir=args.out, resume=args.resume,
                   experiment=args.name or run_name_with_overrides(args.experiment, args.preset, args.set))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {result.run_dir}")
        val = "-" if result.best_val_acc is None else f"{result.best_val_acc:.2f}%"
        test = "-" if result.test_acc is None else f"{result.test_acc:.2f}%"
        print(f"best epoch {result.best_epoch}: val acc {val}, test acc {test}")
        if result.table is not None:
            print(result.table.round(2).to_string())
    return 0


def _evaluate_command(args) -> int:
    changes = check_inference_changes(parse_overrides(args.set))
    saved = read_checkpoint(args.checkpoint)  # a clear error for a missing, empty or foreign file, before any data
    saved_data = saved.get("data_config") or {}
    data_cfg = DataConfig(dataset=args.dataset, root=args.root, store=args.store, limit=args.limit,
                          T=args.T if args.T is not None else saved_data.get("T"),
                          pad=args.pad if args.pad is not None else saved_data.get("pad"))
    check_run_inputs(data_cfg, ModelConfig.from_dict(saved["model_config"]), [args.split])
    table, predictions = evaluate(saved, args.dataset, args.split, args.root, store=args.store,
                                  batch_size=args.batch_size, device=args.device, precision=args.precision,
                                  limit=args.limit,
                                  T=args.T, pad=args.pad, changes=changes,
                                  progress=not args.no_progress)
    print(table.to_string())
    if args.out:
        out = Path(args.out)
        write_predictions(out / "predictions.json", predictions, dataset=args.dataset, split=args.split,
                          meta={"checkpoint": str(args.checkpoint)})
        save_table(table, out / f"{args.split}_table.csv")  # + its provenance sidecar (the checkpoint's run)
        print(f"wrote {out / 'predictions.json'} and {out / f'{args.split}_table.csv'}")
    return 0


def _score_command(args) -> int:
    predictions, header = read_prediction_file(args.predictions)
    check_prediction_target(header, args.dataset, args.split, path=args.predictions, force=args.force)
    table = score(load_records(DataConfig(dataset=args.dataset, root=args.root), args.split), predictions,
                  missing=args.missing)
    print(table.to_string())
    if args.out:
        note_run_read(Path(args.predictions).parent)  # a run folder's predictions: the table names that run
        save_table(table, args.out)
        print(f"wrote {args.out}")
    return 0


def _add_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="test", help="split to score (default: test)")


def _command(subparsers, name: str, summary: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=summary, description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_train_parser(subparsers) -> None:
    p = _command(subparsers, "train", "train a model; writes a run folder",
                 "Train AV-Master with the authors' recipe (Adam 1e-4, x0.1 every 8 epochs, 30 epochs, batch 64), "
                 "keep the best-on-validation checkpoint and score it on the test split.", _TRAIN_EPILOG)
    p.add_argument("--experiment", default="default",
                   help="named model configuration (avmaster_core.core.experiments.EXPERIMENTS), e.g. default, "
                        "table7/wo_tdpp, table9/len4 (default: default)")
    add_model_arguments(p)
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", type=override_option,
                   help="change one ModelConfig field, read by its type: --set dim=64, --set use_tdpp=false "
                        "(switches: true/false/1/0), --set combine=mul (repeatable)")
    add_config_arguments(p, DataConfig, required=("dataset", "root"),
                         helps={"T": "segments per video (default: as stored; fig4/T* experiments set it)"})
    add_config_arguments(p, TrainConfig)
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder from last.pt")
    p.add_argument("--out", default="results/runs", help="runs folder (default results/runs)")
    p.add_argument("--name", help="run folder name under --out (default: the experiment, paper/<experiment> "
                                  "for --preset paper, plus any --set changes)")
    p.set_defaults(func=_train_command, outputs={"out": "folder"})


def _add_evaluate_parser(subparsers) -> None:
    p = _command(subparsers, "evaluate", "score a checkpoint on a split",
                 "Load a checkpoint written by `avmaster train`, predict a split and print the accuracies in the "
                 "paper's Table II layout.", _EVALUATE_EPILOG)
    p.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run folder")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", type=override_option,
                   help="inference-only ModelConfig change, e.g. --set inference_use_a=false (Table XII) or "
                        "--set combine=mul (Table XIII); repeatable")
    add_config_arguments(p, DataConfig, required=("dataset", "root"),
                         helps={"T": "segments per video (default: the checkpoint's training setting)",
                                "pad": "pad videos shorter than --T (default: the checkpoint's training setting)",
                                "limit": "score only the first N records (smoke runs)"})
    _add_split(p)
    p.add_argument("--batch-size", type=AT_LEAST_1, default=64, help="evaluation batch size (default 64)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--out", help="folder for predictions.json and <split>_table.csv")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate_command, outputs={"out": "folder"})


def _add_score_parser(subparsers) -> None:
    p = _command(subparsers, "score", "score a predictions file",
                 "Score saved per-question predictions against a split's answers and print the paper's Table II "
                 "layout.", _SCORE_EPILOG)
    add_config_arguments(p, DataConfig, required=("dataset", "root"), skip=("store", "T", "pad", "limit"))
    _add_split(p)
    p.add_argument("--predictions", required=True, help="predictions.json written by train or evaluate")
    p.add_argument("--force", action="store_true",
                   help="score even if the file records another dataset or split than --dataset/--split")
    p.add_argument("--missing", choices=("error", "wrong"), default="error",
                   help="questions without a prediction: error (default) or count them wrong")
    p.add_argument("--out", help="also write the table to this CSV file")
    p.set_defaults(func=_score_command, outputs={"out": "file"})


def register(subparsers) -> None:
    """Add `train`, `evaluate` and `score` to the `avmaster` command."""
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    _add_score_parser(subparsers)
