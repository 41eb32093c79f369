"""Checkpoints of the released code (AoKoo233/AV-Master) <-> our official-preset model.

    model = from_official_state_dict(torch.load("best.pt", map_location="cpu"))   # eval-mode logits match
    sd = to_official_state_dict(model)     # the released code's names (its never-used modules zero-filled)
    official_parameter_counts()            # {"used": 50,646,913, "released_total": 61,318,017, ...}

resources/official_keys.tsv lists every key the released code saves, its shape and whether the
parameter is used (receives a gradient). Keys of never-used modules (fc_p, fc_spat_q, the fusion linears,
the decoders' class/positional embeddings, memory_intermediate, ...) are accepted and ignored.
"""
from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from importlib import resources

import torch

from .config import ModelConfig
from .experiments import experiment
from .model import AVMaster, build_model, count_parameters

_DECODERS = {"fc_answer_pred": "decoder_qa", "fc_answer_pred2": "decoder_pref.a", "fc_answer_pred3": "decoder_pref.v"}
_PREF = {"AP_Module": "pref.a", "VP_Module": "pref.v"}

# (official regex, our template): applied in order, the first match wins.
_RULES: list[tuple[str, str]] = [
    (r"fc_a\.(weight|bias)", r"proj_audio.\1"),
    (r"fc_v\.(weight|bias)", r"proj_visual.\1"),
    (r"fc_word\.(weight|bias)", r"proj_words.\1"),
    (r"fc_q\.(weight|bias)", r"proj_question.\1"),
    (r"GlobalSelf_Module\.layers\.0\.(self_attn\..+|norm[12]\..+)", r"context.\1"),
    (r"GlobalSelf_Module\.layers\.0\.(linear[12]\..+)", r"context.ffn.\1"),
    (r"(AP_Module|VP_Module)\.layers\.0\.(self_attn\..+|cm_attn\..+|norm[12]\..+)", r"{pref}.\2"),
    (r"(AP_Module|VP_Module)\.layers\.0\.(linear[12]\..+)", r"{pref}.ffn.\2"),
    (r"AugInformation\.video_embeddings\.(weight|bias)", r"focus.embed.\1"),
    (r"AugInformation\.focus_capture\.encoder\.layers\.0\.(.+)", r"focus.first.\1"),
    (r"AugInformation\.focus_capture\.decoder\.layers\.0\.(self_attn\..+|cross_attn\..+|norm[123]\..+)",
     r"focus.layer.\1"),
    (r"AugInformation\.focus_capture\.decoder\.layers\.0\.(linear[12]\..+)", r"focus.layer.ffn.\1"),
    (r"AugInformation\.focus_capture\.decoder\.norm\.(weight|bias)", r"focus.final_norm.\1"),
    (r"bisa_v\.weight", r"focus_bias.v"),  # sic: the released code spells it "bisa_v"
    (r"bias_a\.weight", r"focus_bias.a"),
    (r"Uo_([av])\.(weight|bias)", r"pool.\1.proj.\2"),
    (r"wo_([av])\.(weight|bias)", r"pool.\1.score.\2"),
    (r"bo_([av])", r"pool.\1.beta"),
    (r"linear_visual_layer\.(weight|bias)", r"fuse.\1"),
    (r"(fc_answer_pred\d?)\.layer_ca\.(\d+)\.attention\.self\.(query|key|value)\.(.+)", r"{dec}.layers.\2.\3.\4"),
    (r"(fc_answer_pred\d?)\.layer_ca\.(\d+)\.attention\.output\.dense\.(.+)", r"{dec}.layers.\2.attn_dense.\3"),
    (r"(fc_answer_pred\d?)\.layer_ca\.(\d+)\.attention\.output\.LayerNorm\.(.+)", r"{dec}.layers.\2.attn_norm.\3"),
    (r"(fc_answer_pred\d?)\.layer_ca\.(\d+)\.hidden_intermediate\.dense\.(.+)", r"{dec}.layers.\2.inter_dense.\3"),
    (r"(fc_answer_pred\d?)\.layer_ca\.(\d+)\.output\.dense\.(.+)", r"{dec}.layers.\2.out_dense.\3"),
    (r"(fc_answer_pred\d?)\.layer_ca\.(\d+)\.output\.LayerNorm\.(.+)", r"{dec}.layers.\2.out_norm.\3"),
    (r"(fc_answer_pred\d?)\.head\.bias", r"{dec}.head_bias"),
    (r"(fc_answer_pred\d?)\.head\.transform\.dense\.(.+)", r"{dec}.head_dense.\2"),
    (r"(fc_answer_pred\d?)\.head\.transform\.LayerNorm\.(.+)", r"{dec}.head_norm.\2"),
    (r"(fc_answer_pred\d?)\.head\.decoder\.weight", r"{dec}.head_decoder.weight"),
]


@dataclasses.dataclass(frozen=True)
class OfficialKey:
    name: str
    shape: tuple[int, ...]
    used: bool


@lru_cache(maxsize=1)
def official_keys() -> tuple[OfficialKey, ...]:
    """Every key of the released state dict (resources/official_keys.tsv): name, shape, used."""
    text = resources.files("avmaster_core").joinpath("resources/official_keys.tsv").read_text()
    rows = []
    for line in text.strip().splitlines()[1:]:
        name, shape, _numel, used = line.split("\t")
        rows.append(OfficialKey(name, tuple(int(s) for s in shape.strip("[]").split(",")), used == "yes"))
    return tuple(rows)


def official_parameter_counts() -> dict[str, int]:
    """Parameter counts of the released model: used (50,646,913), dead (10,671,104), released_total (61,318,017).

    The paper's "61M" (Table VI) is released_total: it includes modules the released code builds and never uses.
    """
    used = sum(_numel(k.shape) for k in official_keys() if k.used)
    total = sum(_numel(k.shape) for k in official_keys())
    return {"used": used, "dead": total - used, "released_total": total}


def trained_parameters(preset: str = "official") -> int:
    """Parameters of the model this package trains as AV-Master on `preset` (ours in Table VI's Params column;
    the official preset's equals official_parameter_counts()["used"])."""
    return count_parameters(build_model(experiment("default", preset)))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def official_to_ours(name: str) -> str | None:
    """Our parameter name for a released key; None for keys of never-used modules."""
    for pattern, template in _RULES:
        m = re.fullmatch(pattern, name)
        if m:
            groups = m.groups()
            dec = _DECODERS.get(groups[0], "") if groups else ""
            pref = _PREF.get(groups[0], "") if groups else ""
            return m.expand(template.replace("{dec}", dec).replace("{pref}", pref))
    return None


def _strip_prefix(sd: dict) -> dict:
    # checkpoints saved from nn.DataParallel (the released training script) prefix every key with "module."
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def from_official_state_dict(state_dict: dict, config: ModelConfig | None = None, fast: bool = True) -> AVMaster:
    """An official-preset AVMaster holding the released code's weights (eval mode); fast: see build_model.

    `config` may change inference-only fields of the official preset (combine, inference_use_a/v, ...);
    fields that change parameters must stay as in ModelConfig.official(). Raises ValueError naming the key
    for a missing, mis-shaped or unknown key.
    """
    cfg = config or ModelConfig.official()
    model = build_model(cfg, fast=fast)
    ours = model.state_dict()
    sd = _strip_prefix(dict(state_dict))
    table = {k.name: k for k in official_keys()}
    unknown = sorted(set(sd) - set(table))
    if unknown:
        raise ValueError(f"state dict has keys the released AV-Master code does not save: {unknown[:8]}"
                         f"{' ...' if len(unknown) > 8 else ''}; is this an AV-Master checkpoint?")
    loaded = {}
    for key in table.values():
        target = official_to_ours(key.name)
        if target is None:  # a never-used module: accepted (if present) and ignored
            continue
        if key.name not in sd:
            raise ValueError(f"official state dict is missing key {key.name!r} (shape {list(key.shape)})")
        value = sd[key.name]
        if tuple(value.shape) != key.shape:
            raise ValueError(f"official key {key.name!r} has shape {list(value.shape)}, expected {list(key.shape)}")
        if target not in ours or tuple(ours[target].shape) != key.shape:
            raise ValueError(f"this config has no parameter {target!r} of shape {list(key.shape)} for official key "
                             f"{key.name!r}; official checkpoints load only into the official preset's structure "
                             "(change only inference fields such as combine or inference_use_a/v)")
        loaded[target] = value
    missing = sorted(set(ours) - set(loaded))
    if missing:
        raise ValueError(f"the config builds parameters that official checkpoints do not hold: {missing[:8]}; "
                         "change only inference fields of ModelConfig.official()")
    model.load_state_dict(loaded, strict=True)
    return model.eval()


def to_official_state_dict(model: AVMaster, include_unused: bool = True) -> dict[str, torch.Tensor]:
    """Our official-preset weights under the released code's key names (unused modules zero-filled)."""
    ours = model.state_dict()
    sd = {}
    for key in official_keys():
        target = official_to_ours(key.name)
        if target is None:
            if include_unused:
                sd[key.name] = torch.zeros(key.shape)
            continue
        if target not in ours:
            raise ValueError(f"model has no parameter {target!r} (official {key.name!r}); "
                             "only official-preset models export to the released format")
        sd[key.name] = ours[target].detach().clone()
    return sd
