"""Checkpoints: what best.pt and last.pt hold, how they are written and read back, and the RNG state.

    best.pt   {"format", "model_config", "train_config", "data_config", "experiment", "epoch", "val_acc", "model"}
    last.pt   the same configs plus "config" (config.json's record), "optimizer", "scheduler", "rng" (one state per
              rank) and the training loop's state (next_epoch, next_step, best_val_acc, ...): all a resume needs

Both are written atomically (atomic.save_torch) and read with weights_only=True (plain types only).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .atomic import save_torch

CHECKPOINT_FORMAT = 1


# ------------------------------------------------------------------------------------------------- RNG state
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's torch, CUDA, numpy and Python RNG states, in types torch.load(weights_only=True) reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (kind, keys.tolist(), pos, has_gauss, gauss),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ------------------------------------------------------------------------------------------------ write, read
def _configs(config_record: dict) -> dict:
    return {"format": CHECKPOINT_FORMAT, "model_config": config_record["model"],
            "train_config": config_record["train"], "data_config": config_record["data"]}


def save_best(path: Path, model, config_record: dict, *, epoch: int, val_acc: float | None) -> None:
    """best.pt: the weights and the configs that rebuild the model (what load_checkpoint reads)."""
    save_torch({**_configs(config_record), "experiment": config_record["experiment"], "epoch": epoch,
                "val_acc": val_acc, "model": model.state_dict()}, path)


def save_last(path: Path, model, optimizer, scheduler, config_record: dict, rngs: list[dict],
              loop_state: dict) -> None:
    """last.pt: everything needed to resume (rngs: one rng_state() per rank; loop_state: the loop's position)."""
    save_torch({**_configs(config_record), "config": config_record, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs,
                **loop_state}, path)


REMEDY = "use a best.pt/last.pt written by `avmaster train`"


def read_checkpoint(path, map_location="cpu", remedy: str = REMEDY) -> dict:
    """The dict of an avmaster checkpoint, its weights checked against its model configuration; a ValueError
    naming the file for a missing, unreadable (truncated, foreign) or mismatched one. remedy: what to do."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train a model (`avmaster train`) first")
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder: give the best.pt or last.pt inside it")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # permission, I/O: the CLI words these
    except Exception as e:  # noqa: BLE001 - empty, truncated, random bytes, arbitrary pickles: all "not readable"
        raise ValueError(f"checkpoint {path} ({path.stat().st_size} bytes) cannot be read "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'no detail'}); it may "
                         f"be truncated or not a checkpoint: {remedy}") from None
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not an avmaster checkpoint (no model_config/model); an official AV-Master "
                         "state dict loads with avmaster_core.from_official_state_dict")
    check_weights(ckpt, f"checkpoint {path}", remedy)
    from .provenance import note_run_read

    note_run_read(path.parent)  # a table written next will list this run (provenance sidecar)
    return ckpt


def check_weights(ckpt: dict, source: str, remedy: str = REMEDY) -> None:
    """ValueError unless the weights of `ckpt` are exactly those of the model its configuration builds (names
    and shapes; the model is built on the meta device: no memory, no compute)."""
    from .config import ModelConfig
    from .model import build_model

    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(ModelConfig.from_dict(ckpt["model_config"]))
                        .state_dict().items()}
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{source}: its model_config does not describe a model of this version "
                         f"({type(e).__name__}: {e}); {remedy}") from None
    weights = ckpt["model"] if isinstance(ckpt["model"], dict) else {}
    found = {k: tuple(getattr(v, "shape", ())) for k, v in weights.items()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {found[k]} (expected {expected[k]})" for k in expected if k in found and found[k] != expected[k]]
    problems = [f"{len(items)} {what} (e.g. {', '.join(items[:3])})"
                for what, items in (("weights missing", missing), ("unknown weights", unexpected),
                                    ("weights of the wrong shape", wrong)) if items]
    if problems:
        raise ValueError(f"{source} does not hold the weights of its model: {'; '.join(problems)}; it is damaged "
                         f"or was edited: {remedy}")


def load_checkpoint(path: str | os.PathLike, map_location="cpu", changes: dict | None = None):
    """(model, model_config) from a checkpoint written by `train` (best.pt or last.pt); the model is in eval mode.

    changes: ModelConfig fields to override that do not change the weights, e.g. the inference-only variants
    of Tables XII/XIII ({"inference_use_a": False}, {"combine": "mul"}).
    """
    return model_from_checkpoint(read_checkpoint(path, map_location), changes)


def model_from_checkpoint(ckpt: dict, changes: dict | None = None):
    """(model, model_config) from a checkpoint dict already read (`read_checkpoint`), for callers that also
    need its other entries (e.g. "data_config") without reading the file twice; see load_checkpoint."""
    from .config import ModelConfig, apply_inference_changes
    from .model import build_model

    cfg = ModelConfig.from_dict(ckpt["model_config"])
    cfg = apply_inference_changes(cfg, changes)  # refuses fields that change the trained model
    model = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg
