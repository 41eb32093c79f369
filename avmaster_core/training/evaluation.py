"""Prediction and evaluation: a model's answers on a dataset, and a saved checkpoint scored on a split.

    from avmaster_core.training.evaluation import evaluate, predict
    table, predictions = evaluate("results/runs/default/1/best.pt", "music_avqa", "test", "data/music_avqa")
    pred = predict(model, dataset)                     # [N] answer indices, in dataset order

`table` is the paper's Table II layout (scoring.score); `predictions` a question_id -> answer index Series
(scoring.write_predictions writes it).
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..core.checkpoint import model_from_checkpoint, read_checkpoint
from ..core.dataset import bank_for, dataset_batches, epoch_order, make_dataset, open_store, require_word_mask
from ..data.annotations import load_records
from ..data.scoring import score
from .distributed import SINGLE_PROCESS, DistContext, gather_objects, resolve_device
from .precision import autocast, check_precision
from .run_config import DataConfig


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


@torch.no_grad()
def predict(model, dataset, *, batch_size: int = 64, device="cpu", precision: str = "fp32",
            num_workers: int = 0,
            features_on_device: bool = True, progress: bool = True, ctx: DistContext | None = None,
            desc: str = "eval", bank=None) -> np.ndarray:
    """Predicted answer index for every item of `dataset` (an AVQADataset), in dataset order: argmax of
    out["logits"], the model's combination of its heads.

    Under DDP each rank predicts its shard and the shards are gathered, so every rank returns the full array.
    bank: the dataset's FeatureBank already placed on a device (default: dataset.bank_for).
    """
    ctx = ctx or SINGLE_PROCESS
    device = torch.device(device)
    was_training = model.training
    model.eval()
    order = epoch_order(len(dataset), 0, 0, shuffle=False, rank=ctx.rank, world_size=ctx.world_size, even=True)
    if bank is None:
        bank = bank_for(dataset, device, on_device=features_on_device, num_workers=num_workers)
    batches = dataset_batches(dataset, order, batch_size, to=device, bank=bank, num_workers=num_workers)
    preds: list[np.ndarray] = []
    bar = progress_bar(batches, len(batches), desc, progress and ctx.is_main)
    for batch in bar:
        with autocast(device, precision):
            out = model(batch)
        preds.append(out["logits"].float().argmax(-1).cpu().numpy())
    bar.close()
    model.train(was_training)
    mine = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    if not ctx.enabled:
        return mine
    result = np.full(len(dataset), -1, dtype=np.int64)
    for rank_order, rank_preds in gather_objects((order, mine), ctx):
        result[rank_order] = rank_preds  # padding repeats give the same answer
    return result


def accuracy(records, pred_idx: np.ndarray) -> float:
    """Percent correct (the unit of the paper's tables)."""
    return 100.0 * float(np.mean(records["answer_idx"].to_numpy() == pred_idx)) if len(records) else float("nan")


def prediction_series(records, pred_idx: np.ndarray):
    """question_id -> predicted answer index (the form scoring.score and write_predictions take)."""
    return pd.Series(pred_idx.astype(np.int64), index=records["question_id"].to_numpy(), name="prediction")


def evaluate(checkpoint: str | os.PathLike | dict, dataset: str, split: str = "test", root: str | os.PathLike = ".", *,
             store: str | os.PathLike | None = None, batch_size: int = 64, device: str = "auto",
             precision: str = "fp32", limit: int | None = None, T: int | None = None, pad: str | None = None,
             changes: dict | None = None, progress: bool = True):
    """Score a checkpoint on one split: returns (table in the paper's layout, per-question predictions).

    predictions: a pandas Series question_id -> predicted answer index (scoring.write_predictions writes it).
    The number of segments T and its padding are taken from the checkpoint's data config unless given.
    changes: inference-only ModelConfig overrides (see load_checkpoint), e.g. Table XII's {"inference_use_a": False}.
    """
    dev = resolve_device(device)
    check_precision(precision, dev)
    ckpt = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)  # a dict: already read
    model, _ = model_from_checkpoint(ckpt, changes)
    saved_data = ckpt.get("data_config") or {}
    data_cfg = DataConfig(dataset=dataset, root=str(root), store=str(store) if store else None, limit=limit,
                          T=T if T is not None else saved_data.get("T"),
                          pad=pad if pad is not None else saved_data.get("pad"))
    model.to(dev)
    with open_store(data_cfg) as feature_store:
        data = make_dataset(load_records(data_cfg, split), feature_store, data_cfg, word_masks=model.cfg.mask_padding)
        require_word_mask(model.cfg, data)
        pred = predict(model, data, batch_size=batch_size, device=dev, precision=precision, progress=progress, desc=split)
    predictions = prediction_series(data.records, pred)
    return score(data.records, predictions), predictions
