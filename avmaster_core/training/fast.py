"""The GPU fast path: bf16 autocast, one captured training step and inference, and a data path that keeps up.

    optimizer = make_optimizer(model, lr=1e-4)                 # Adam a CUDA graph can hold
    runner = FastRunner(model, optimizer)                      # precision="bf16", capture="auto"
    step = runner.train_step(batch)                            # step.losses["total"], step.logits
    logits = runner.infer(batch)                               # eval-mode logits [B, C]
    error = compare_to_fp32(model, batch)                      # max relative logits error vs fp32 eager

Why. The official focus recurrence is 60 sequential steps of small blocks, run twice (audio and visual are
already batched through the shared block): eager PyTorch spends the step launching kernels, not computing.
A CUDA graph records the whole training step once -- forward, losses, backward and the Adam update -- and
replays it with one launch; the 60-step loop then costs GPU time only.

Capture modes (`capture=`):
- "graph": manual whole-step capture with torch.cuda.graph at the shape of the first batch. Batches of
  another shape (the last, smaller batch of an epoch) run eagerly on the same weights and optimizer.
  Needs a CUDA model and a capturable optimizer (`make_optimizer`: capturable, fused, learning rate as a
  device tensor so that StepLR's in-place updates reach the replayed step).
- "compile": torch.compile(model, mode="reduce-overhead") (inductor's fused kernels + its own CUDA graphs
  of forward and backward); the optimizer step stays eager. Compiling the unrolled loop takes minutes.
- "eager": autocast only.
- "auto": "graph" on CUDA, "eager" elsewhere.
Whatever cannot be captured falls back to eager with a FastPathWarning that says why; the result stays correct.

Outputs of a replayed graph live in static buffers that the next call overwrites: read (or clone) them
before the next train_step / infer.

Precision (`precision=`): "bf16" (autocast; LayerNorm, softmax and the losses stay fp32 as autocast
decides), "tf32" (fp32 tensors, TF32 matmuls), "fp32" (full fp32 matmuls, the reference).

Data path: `place_bank` puts a dataset's FeatureBank on the GPU when it fits (else pinned host memory);
`dataset.Batches` iterates an epoch by slicing index tensors that live on the bank's device (the epoch's order
and negatives are uploaded once per epoch; `dataset.draw_negatives(n, device=...)` draws them there), so the hot
loop does no per-item Python work and no host-to-device copy except, for a pinned bank, the batch itself.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..core.dataset import Batches, FeatureBank, draw_negatives, epoch_order

CAPTURES = ("auto", "graph", "compile", "eager")
PRECISIONS = ("bf16", "tf32", "fp32")
MODEL_INPUTS = ("audio", "visual", "question", "words", "label", "neg_audio", "neg_visual", "choices", "word_mask")
INFER_INPUTS = ("audio", "visual", "question", "words", "choices", "word_mask")  # AVQA's candidates, mask_padding
_CAPTURABLE_WARNING = "This instance was constructed with capturable=True"


class FastPathWarning(RuntimeWarning):
    """A part of the fast path could not be used; the named fallback runs instead (results stay correct)."""


@dataclass
class StepOutput:
    """What one training step returns: the detached losses ("qa", "a", "v", "c", "total") and logits [B, C]."""

    losses: dict[str, Tensor]
    logits: Tensor


# ---------------------------------------------------------------------------------------------------------------
# Optimizer and precision
# ---------------------------------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, lr: float = 1e-4, betas=(0.9, 0.999), weight_decay: float = 0.0
                   ) -> torch.optim.Adam:
    """Adam (the official recipe's optimizer) in the form a captured step can hold.

    On CUDA: capturable and fused (one kernel for all parameters), with the learning rate as a device tensor,
    so that a scheduler's update (StepLR fills it in place) reaches the replayed graph. Elsewhere: plain Adam.
    The update rule is the same in every form.
    """
    device = next(model.parameters()).device
    if device.type != "cuda":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    return torch.optim.Adam(model.parameters(), lr=torch.tensor(float(lr), device=device), betas=tuple(betas),
                            weight_decay=weight_decay, capturable=True, fused=True)


def optimizer_is_capturable(optimizer: torch.optim.Optimizer | None) -> bool:
    return optimizer is not None and all(g.get("capturable", False) for g in optimizer.param_groups)


def learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The first group's learning rate as a float (it is a device tensor for `make_optimizer` on CUDA)."""
    return float(optimizer.param_groups[0]["lr"])


@contextlib.contextmanager
def matmul_precision(precision: str):
    """fp32 matmuls at full precision ("fp32"/"bf16": autocast handles bf16) or in TF32 ("tf32")."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _autocast(device: torch.device, precision: str, cache: bool = True):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=cache)


def _signature(batch: dict) -> tuple:
    return tuple((k, tuple(batch[k].shape), batch[k].dtype, batch[k].device) for k in MODEL_INPUTS if k in batch)


def _model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def _copy_into(dst, src) -> None:
    """Copy a nest of tensors (dicts / StepOutput) into the same structure of buffers."""
    if isinstance(dst, Tensor):
        dst.copy_(src)
    elif isinstance(dst, dict):
        for k in dst:
            _copy_into(dst[k], src[k])
    elif isinstance(dst, StepOutput):
        _copy_into(dst.losses, src.losses)
        _copy_into(dst.logits, src.logits)


# ---------------------------------------------------------------------------------------------------------------
# Graphs: the real CUDA graph, and the stand-in that re-runs the body (tests and CPU dry runs)
# ---------------------------------------------------------------------------------------------------------------
class _CudaGraph:
    """torch.cuda.CUDAGraph: capture(body) records it (without running it), replay() runs it."""

    def __init__(self, reset: Callable[[], None] | None = None):
        self.graph = torch.cuda.CUDAGraph()
        self.outputs = None

    def capture(self, body: Callable[[], object]) -> None:
        with torch.cuda.graph(self.graph):
            self.outputs = body()

    def replay(self) -> None:
        self.graph.replay()


class ReplayByCall:
    """Stand-in for a CUDA graph on any device: replay() re-runs the body on the same static inputs and copies
    its results into the first replay's output buffers. Same buffers and control flow as the real graph, no
    capture; `reset` (zeroing gradients) stands for the graph's overwrite of its gradient buffers."""

    def __init__(self, reset: Callable[[], None] | None = None):
        self.body, self.outputs, self.reset = None, None, reset

    def capture(self, body: Callable[[], object]) -> None:
        self.body = body

    def replay(self) -> None:
        if self.reset is not None:
            self.reset()
        result = self.body()
        if self.outputs is None:
            self.outputs = result
        else:
            _copy_into(self.outputs, result)


@dataclass
class _Captured:
    graph: object
    signature: tuple
    static: dict  # the graph's input buffers

    def load(self, batch: dict) -> None:
        for k, buf in self.static.items():
            buf.copy_(batch[k], non_blocking=True)


# ---------------------------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------------------------
class FastRunner:
    """Training steps and inference of `model` with the fast path (see the module docstring).

    model:      an AVMaster (or any module with the same forward/loss API) on its device.
    optimizer:  required for train_step; `make_optimizer(model)` for the graph mode.
    precision:  "bf16", "tf32" or "fp32".       capture: "auto", "graph", "compile" or "eager".
    forward:    the callable of eager training forwards (e.g. a DDP wrapper); default `model`. Graph capture
                is not used with a wrapper (DDP's gradient hooks cannot be replayed safely).
    warmup:     eager steps before a capture (they initialise Adam's state and cuBLAS workspaces).
    restore_after_warmup: put weights and optimizer state back after the warm-up steps, so the captured run
                trains exactly the steps it is given (the engine needs that; the benchmark does not care).
    compile_backend / compile_mode: for capture="compile" (mode default: "reduce-overhead" on CUDA).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 precision: str = "bf16", capture: str = "auto", forward: Callable | None = None, warmup: int = 3,
                 restore_after_warmup: bool = True, compile_backend: str | Callable = "inductor",
                 compile_mode: str | None = None, graph_factory=None, max_infer_graphs: int = 4):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if capture not in CAPTURES:
            raise ValueError(f"capture must be one of {CAPTURES}, got {capture!r}")
        self.model, self.optimizer, self.precision = model, optimizer, precision
        self.forward = forward if forward is not None else model
        self.device = next(model.parameters()).device
        self.warmup, self.restore_after_warmup = max(int(warmup), 1), restore_after_warmup
        self.max_infer_graphs = max_infer_graphs
        self.fallbacks: list[str] = []        # why parts of the fast path were not used
        self.eager_train_steps = 0            # steps that ran eagerly (other shapes, or no capture)
        self._graph_factory = graph_factory
        self._train_graph: _Captured | None = None
        self._train_capture_tried = False
        self._infer_graphs: dict[tuple, _Captured] = {}
        self._grads_static = False            # after a capture: gradients live in the graph's buffers
        self._folded_modules = [m for m in model.modules()]
        self._compiled = None

        if capture == "auto":
            capture = "graph" if (self.device.type == "cuda" or graph_factory is not None) else "eager"
        if capture == "graph" and graph_factory is None and self.device.type != "cuda":
            self._fall_back(f"CUDA graphs need a CUDA device (the model is on {self.device}); running eagerly")
            capture = "eager"
        self.infer_mode = capture
        self.train_mode = capture
        if capture == "graph" and self.forward is not model:
            self._fall_back("graph capture of training is not used with a wrapped forward (e.g. DDP); training "
                            "runs eagerly, inference is still captured")
            self.train_mode = "eager"
        if (capture == "graph" and graph_factory is None and optimizer is not None
                and not optimizer_is_capturable(optimizer)):
            self._fall_back("the optimizer is not capturable (build it with avmaster_core.training.fast.make_optimizer); "
                            "training runs eagerly, inference is still captured")
            self.train_mode = "eager"
        if capture == "compile":
            if compile_mode is None and compile_backend == "inductor" and self.device.type == "cuda":
                compile_mode = "reduce-overhead"
            try:
                kwargs = {"backend": compile_backend, "dynamic": False}
                if compile_mode is not None:
                    kwargs["mode"] = compile_mode
                self._compiled = torch.compile(self.forward, **kwargs)
            except Exception as e:  # noqa: BLE001 -- any failure means: run eagerly
                self._fall_back(f"torch.compile failed ({type(e).__name__}: {e}); running eagerly")
                self.train_mode = self.infer_mode = "eager"

    # ------------------------------------------------------------------ helpers
    def _fall_back(self, why: str) -> None:
        self.fallbacks.append(why)
        warnings.warn(f"avmaster fast path: {why}", FastPathWarning, stacklevel=3)

    def _invalidate_folded(self) -> None:
        # A replayed optimizer step changes weights without bumping their version counters, so the cached
        # weight products of blocks.folded (eager inference) must be dropped.
        for m in self._folded_modules:
            m.__dict__.pop("_folded_cache", None)

    def _train_body(self, batch: dict, forward: Callable, cache: bool = True) -> StepOutput:
        """forward + losses + backward + optimizer step (gradients must be zero or None before)."""
        model = self.model
        with _autocast(self.device, self.precision, cache), matmul_precision(self.precision):
            out = forward(batch)
            losses = model.loss(out, batch)
        losses["total"].backward()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CAPTURABLE_WARNING)
            self.optimizer.step()
        return StepOutput({k: v.detach() for k, v in losses.items()}, out["logits"].detach())

    def _infer_body(self, batch: dict, forward: Callable, cache: bool = True) -> Tensor:
        with _autocast(self.device, self.precision, cache), matmul_precision(self.precision):
            return forward(batch)["logits"].detach()

    def _new_graph(self, reset=None):
        return (self._graph_factory or _CudaGraph)(reset=reset)

    # ------------------------------------------------------------------ snapshots for the warm-up
    def _snapshot(self) -> dict:
        params = [p.detach().clone() for p in self.model.parameters()]
        state = {id(p): {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
                 for p, s in self.optimizer.state.items()}
        return {"params": params, "state": state}

    def _restore(self, snap: dict) -> None:
        with torch.no_grad():
            for p, saved in zip(self.model.parameters(), snap["params"]):
                p.copy_(saved)
            for p, s in self.optimizer.state.items():
                saved = snap["state"].get(id(p))
                for k, v in s.items():
                    if torch.is_tensor(v):
                        # Adam creates its state lazily as zeros (step 0): zeroing = never stepped
                        v.copy_(saved[k]) if saved is not None else v.zero_()
        self._invalidate_folded()

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict) -> StepOutput:
        """One optimizer step on `batch` (model in training mode). Returns the detached losses and logits."""
        if self.optimizer is None:
            raise ValueError("FastRunner.train_step needs an optimizer: FastRunner(model, make_optimizer(model))")
        self.model.train()
        if self.train_mode == "graph":
            if self._train_graph is None and not self._train_capture_tried:
                self._train_capture_tried = True
                self._capture_train(batch)
            g = self._train_graph
            if g is not None and _signature(batch) == g.signature:
                g.load(batch)
                g.graph.replay()
                self._invalidate_folded()
                return g.graph.outputs
        if self.train_mode == "compile":
            return self._compiled_train(batch)
        return self._eager_train(batch, self.forward)

    def _eager_train(self, batch: dict, forward: Callable) -> StepOutput:
        self.eager_train_steps += 1
        # Gradients that live in a captured graph's buffers are zeroed in place (the graph reads them there).
        self.optimizer.zero_grad(set_to_none=not self._grads_static)
        return self._train_body(batch, forward)

    def _compiled_train(self, batch: dict) -> StepOutput:
        try:
            if self.device.type == "cuda":
                torch.compiler.cudagraph_mark_step_begin()
            self.optimizer.zero_grad(set_to_none=True)
            return self._train_body(batch, self._compiled)
        except Exception as e:  # noqa: BLE001 -- compilation errors surface at the first call
            self._fall_back(f"torch.compile of the training step failed ({type(e).__name__}: {_short(e)}); "
                            "running eagerly")
            self.train_mode = self.infer_mode = "eager"
            return self._eager_train(batch, self.forward)

    def _lr_on_device(self) -> None:
        # The captured Adam step reads the learning rate from device memory; a float (or a CPU tensor, e.g.
        # after optimizer.load_state_dict from a checkpoint loaded on the CPU) would be frozen into the graph.
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            if not (torch.is_tensor(lr) and lr.device == self.device):
                group["lr"] = torch.tensor(float(lr), device=self.device)

    def _warm_up(self, step, times: int) -> None:
        """Run `step` `times` times before capture; on a real GPU on a side stream, as CUDA graphs require."""
        cuda = self.device.type == "cuda" and self._graph_factory is None
        stream = torch.cuda.Stream() if cuda else None
        if cuda:
            stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
            for _ in range(times):
                step()
        if cuda:
            torch.cuda.current_stream().wait_stream(stream)

    def _capture_train(self, batch: dict) -> None:
        if self.device.type == "cuda":
            self._lr_on_device()
        inputs = _model_inputs(batch)
        static = {k: v.detach().clone() for k, v in inputs.items()}
        snap = self._snapshot() if self.restore_after_warmup else None
        try:
            def warm_step():  # initialises Adam's state, cuBLAS handles, autotuning
                self.optimizer.zero_grad(set_to_none=True)
                self._train_body(static, self.model)
            self._warm_up(warm_step, self.warmup)
            if snap is not None:
                self._restore(snap)
            self.optimizer.zero_grad(set_to_none=True)
            graph = self._new_graph(reset=lambda: self.optimizer.zero_grad(set_to_none=False))
            graph.capture(lambda: self._train_body(static, self.model, cache=False))
        except Exception as e:  # noqa: BLE001 -- any capture failure: train eagerly
            if snap is not None:
                self._restore(snap)
            self.optimizer.zero_grad(set_to_none=True)
            self._fall_back(f"capturing the training step failed ({type(e).__name__}: {_short(e)}); "
                            "training runs eagerly")
            self.train_mode = "eager"
            return
        self._train_graph = _Captured(graph, _signature(batch), static)
        self._grads_static = True

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(self, batch: dict) -> Tensor:
        """Eval-mode logits [B, C] (the combined prediction). The model's train/eval mode is restored after."""
        was_training = self.model.training
        self.model.eval()
        try:
            if self.infer_mode == "graph":
                sig = _signature(_infer_inputs(batch))
                g = self._infer_graphs.get(sig)
                if g is None and len(self._infer_graphs) < self.max_infer_graphs:
                    g = self._capture_infer(batch)
                if g is not None:
                    g.load(batch)
                    g.graph.replay()
                    return g.graph.outputs
            elif self.infer_mode == "compile":
                try:
                    if self.device.type == "cuda":
                        torch.compiler.cudagraph_mark_step_begin()
                    return self._infer_body(_infer_inputs(batch), self._compiled)
                except Exception as e:  # noqa: BLE001
                    self._fall_back(f"torch.compile of inference failed ({type(e).__name__}: {_short(e)}); "
                                    "running eagerly")
                    self.infer_mode = "eager"
            return self._infer_body(_infer_inputs(batch), self.model)
        finally:
            self.model.train(was_training)

    def _capture_infer(self, batch: dict) -> _Captured | None:
        static = {k: v.detach().clone() for k, v in _infer_inputs(batch).items()}
        try:
            self._warm_up(lambda: self._infer_body(static, self.model), 2)
            graph = self._new_graph()
            graph.capture(lambda: self._infer_body(static, self.model, cache=False))
        except Exception as e:  # noqa: BLE001
            self._fall_back(f"capturing inference failed ({type(e).__name__}: {_short(e)}); running eagerly")
            self.infer_mode = "eager"
            return None
        captured = _Captured(graph, _signature(static), static)
        self._infer_graphs[captured.signature] = captured
        return captured


def _infer_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in INFER_INPUTS if k in batch}


def _short(e: Exception, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


# ---------------------------------------------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------------------------------------------
def logits_error(fast: Tensor, reference: Tensor) -> dict[str, float]:
    """How far `fast` logits [B, C] are from `reference`:
    max_row_rel = max over samples of max|fast - ref| / max|ref| (worst sample, per-row scale);
    rel_l2 = ||fast - ref|| / ||ref|| over the whole tensor; argmax_agreement = share of equal predictions."""
    fast, reference = fast.detach().float(), reference.detach().float()
    diff = (fast - reference).abs()
    row_scale = reference.abs().amax(dim=1).clamp_min(1e-12)
    return {
        "max_row_rel": float((diff.amax(dim=1) / row_scale).max()),
        "rel_l2": float(diff.norm() / reference.norm().clamp_min(1e-12)),
        "max_abs": float(diff.max()),
        "argmax_agreement": float((fast.argmax(1) == reference.argmax(1)).float().mean()),
    }


def reference_logits(model: nn.Module, batch: dict) -> Tensor:
    """Eval-mode fp32 eager logits with full-precision matmuls (no TF32): the reference of the fast path."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), matmul_precision("fp32"), torch.autocast(batch["audio"].device.type, enabled=False):
            return model(_infer_inputs(batch))["logits"].float().clone()
    finally:
        model.train(was_training)


def numerics_report(model: nn.Module, batch: dict, *, precision: str = "bf16", capture: str = "auto",
                    runner: FastRunner | None = None) -> dict:
    """logits_error of the fast path's inference against `reference_logits`, plus the modes actually used."""
    ref = reference_logits(model, batch)
    runner = runner or FastRunner(model, precision=precision, capture=capture)
    fast = runner.infer(batch).float().clone()
    return {**logits_error(fast, ref), "precision": runner.precision, "capture": runner.infer_mode}


def compare_to_fp32(model: nn.Module, batch: dict, *, precision: str = "bf16", capture: str = "auto") -> float:
    """Max relative logits error (worst sample, see logits_error) of the fast path against fp32 eager."""
    return numerics_report(model, batch, precision=precision, capture=capture)["max_row_rel"]


# ---------------------------------------------------------------------------------------------------------------
# Data path
# ---------------------------------------------------------------------------------------------------------------
def bank_bytes(bank) -> int:
    return sum(t.numel() * t.element_size() for t in (bank.audio, bank.visual, bank.question, bank.words,
                                                        bank.video_index, bank.question_index, bank.labels,
                                                        bank.question_ids))


def place_bank(bank, device, max_fraction: float = 0.5):
    """The FeatureBank on `device` when it takes at most `max_fraction` of the free GPU memory, else in pinned
    host memory (batches are then gathered on the host and copied asynchronously). CPU: unchanged."""
    device = torch.device(device)
    if device.type != "cuda":
        return bank
    free, _ = torch.cuda.mem_get_info(device)
    if bank_bytes(bank) <= max_fraction * free:
        return bank.to(device)
    pinned = {k: getattr(bank, k).pin_memory() for k in ("audio", "visual", "question", "words", "video_index",
                                                          "question_index", "labels", "question_ids")}
    optional = {k: getattr(bank, k).pin_memory() for k in ("audio_index", "choices", "tokens")
                if getattr(bank, k) is not None}
    return FeatureBank(**pinned, **optional, words_len=bank.words_len)


def time_data_path(bank, batch_size: int, batches: int = 50, negatives: str = "device") -> float:
    """Mean seconds to build one batch of `bank` (dataset.Batches, the order and negatives as index tensors on the
    bank's device), over the first `batches` batches. negatives: "device" (drawn there), "seeded" or None."""
    if negatives not in (None, "seeded", "device"):
        raise ValueError(f"negatives must be None, 'seeded' or 'device', got {negatives!r}")
    n = len(bank)
    drawn = None if negatives is None else draw_negatives(n, seed=0 if negatives == "seeded" else None,
                                                          device=bank.device)
    it = Batches(bank, epoch_order(n, 0, 0), batch_size, negatives=drawn)
    device = bank.device
    n = min(batches, len(it))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for i, batch in enumerate(it):
        if i + 1 >= n:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / max(n, 1)
