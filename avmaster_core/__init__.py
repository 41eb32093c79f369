"""avmaster_core: the AV-Master model, its losses, data loaders, feature extraction and training.

Public API (imported lazily so that `import avmaster_core` stays light):
    load_annotations, score                         real benchmarks and the paper's table layouts
    ModelConfig, build_model, from_official_state_dict   the model and its two presets
    FeatureStore                                    the HDF5 feature store
    train, TrainConfig, DataConfig, RunResult       training (engine, run_config)
    evaluate, predict, load_checkpoint              evaluation and checkpoints (evaluation, checkpoint)
"""
from __future__ import annotations

import importlib

from .core import __version__  # noqa: F401

_EXPORTS = {
    "load_annotations": "data.annotations",
    "score": "data.scoring",
    "ModelConfig": "core.config",
    "build_model": "core.model",
    "from_official_state_dict": "core.official",
    "FeatureStore": "core.store",
    "ANSWERS": "core.vocab",
    "TrainConfig": "training.run_config",
    "DataConfig": "training.run_config",
    "RunResult": "training.run_config",
    "train": "training.engine",
    "evaluate": "training.evaluation",
    "predict": "training.evaluation",
    "load_checkpoint": "core.checkpoint",
    "generate_synthetic": "data.synthetic",
    "AVQADataset": "core.dataset",
    "ClipEncoder": "extract.encoders",
    "extract_videos": "extract.pipeline",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
