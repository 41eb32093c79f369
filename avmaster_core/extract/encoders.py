"""The feature encoders: open_clip image/text towers and torchvggish, loaded from local weights or a download.

Visual:   CLIP preprocessing (bicubic resize of the shortest side, center crop, /255, CLIP mean/std), then
          `encode_image` (ln_post(CLS) @ proj): one embed_dim vector per frame (768 for ViT-L/14@336).
Question: CLIP BPE tokens (77), the text transformer and ln_final; the sentence feature is the pooled
          (EOT) state @ text_projection, the word features are all 77 states @ text_projection.
Audio:    per one-second chunk, a 96 x 64 log-mel patch (the first 0.96 s), VGGish without PCA -> 128-d.

Weights never download silently into a failure: `WeightsNotFoundError` names the file and where to put it.

The interface every encoder follows (`AudioEncoder`, `VisualEncoder`, `TextEncoder`): `name`, output width
`dim`, `input` (what it reads, in words: the store's `protocol` record is built from these), `preprocess`
(picklable: it runs in decode workers) and `encode` (batched, on the encoder's device), plus `describe()` for
the store's attributes; an audio encoder also declares its `sample_rate` (the decoders resample to it: 16 kHz
for VGGish, 48 kHz for a CLAP). `AUDIO_ENCODERS`, `VISUAL_ENCODERS` and `TEXT_ENCODERS` map a name to a
factory; adding an encoder (e.g. a Table XI row) is one factory registered with `register_audio_encoder` /
`register_visual_encoder` / `register_text_encoder`, and `avmaster extract --audio-encoder/--visual-encoder/
--text-encoder` offers it. The question-text encoder is its own choice (default CLIP ViT-L/14@336's text
tower, whatever the visual encoder).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
VGGISH_FILE = "vggish-10086976.pth"
VGGISH_FRAMES, VGGISH_BANDS = 96, 64
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# A 2-layer, width-64 CLIP with a 768-d joint space: the shapes of the real features, for tests and benchmarks.
TINY_CLIP = {
    "embed_dim": 768,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    "quick_gelu": True,
}


class WeightsNotFoundError(FileNotFoundError):
    """Encoder weights are neither local nor downloadable."""


def _online(host: str, timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("AVMASTER_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# -- preprocessing --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipPreprocess:
    """CLIP's image preprocessing, split in two: a PIL part (decode workers) and a tensor part (device).

    `crop(pil_image)` -> uint8 [3, size, size]: resize the shortest side to `size` (PIL bicubic), center crop.
    `normalize(uint8 [N,3,S,S])` -> float: /255, then (x - mean) / std, as torchvision ToTensor + Normalize.
    """
    size: int = 336
    mean: tuple = CLIP_MEAN
    std: tuple = CLIP_STD
    resize_mode: str = "shortest"  # "shortest" (CLIP) or "squash" (resize both sides to size)

    def __call__(self, image) -> torch.Tensor:  # the interface's `preprocess`: one PIL frame -> uint8 [3,S,S]
        return self.crop(image)

    def crop(self, image) -> torch.Tensor:
        from torchvision.transforms import functional as TF
        from torchvision.transforms import InterpolationMode

        image = image.convert("RGB")
        if self.resize_mode == "squash":
            image = TF.resize(image, [self.size, self.size], interpolation=InterpolationMode.BICUBIC)
        else:
            image = TF.resize(image, self.size, interpolation=InterpolationMode.BICUBIC)
        image = TF.center_crop(image, [self.size, self.size])
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # [3,S,S]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0  # [N,3,S,S]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


# -- CLIP ---------------------------------------------------------------------------------------------------
def _weights_where(model_name: str, pretrained: str) -> tuple[list[str], str]:
    """(candidate local files, a human description of what to fetch) for an open_clip pretrained tag."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name, pretrained)
    found, wanted = [], []
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # "org/name/" -> default file names; "org/name/file"
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        try:
            from huggingface_hub import try_to_load_from_cache
            for name in names:
                hit = try_to_load_from_cache(repo, name)
                if isinstance(hit, str):
                    found.append(hit)
        except ImportError:
            pass
        wanted.append(f"{names[-1]} from https://huggingface.co/{repo}")
    if cfg.get("url"):
        cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if cached.is_file():
            found.append(str(cached))
        wanted.append(f"{os.path.basename(cfg['url'])} from {cfg['url']} (or put it at {cached})")
    return found, " or ".join(wanted)


def _checkpoint_in_folder(folder: Path) -> Path:
    preferred = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors",
                 "pytorch_model.bin"]
    for name in preferred:
        if (folder / name).is_file():
            return folder / name
    files = sorted(p for ext in ("*.safetensors", "*.bin", "*.pt", "*.pth") for p in folder.glob(ext))
    if len(files) != 1:
        raise WeightsNotFoundError(f"weights folder {folder} holds {len(files)} checkpoint files "
                                   f"({[f.name for f in files]}); pass the file itself with --clip-weights")
    return files[0]


def _is_torchscript(path: Path) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or n.endswith("/code/__torch__.py") or "/code/" in n
                   for n in z.namelist()[:50])


class ClipEncoder:
    """An open_clip model in eval mode with its preprocessing and tokenizer.

    Build with `ClipEncoder.load(...)` (named model + tag or local weights) or `ClipEncoder.tiny()`.
    """

    def __init__(self, model, preprocess: ClipPreprocess, tokenizer, name: str, weights: str,
                 device="cpu", precision: str = "fp32"):
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name, self.weights = name, weights
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.precision = precision

    @property
    def dim(self) -> int:  # the interface's output width
        return self.embed_dim

    def encode(self, images: torch.Tensor) -> torch.Tensor:  # the interface's `encode`
        return self.encode_images(images)

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else \
            int(self.model.visual.output_dim)

    @classmethod
    def tiny(cls, seed: int = 0, device="cpu") -> "ClipEncoder":
        """A randomly initialised 2-layer CLIP (TINY_CLIP): right shapes, no download; for tests and benchmarks."""
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer

        torch.manual_seed(seed)
        cfg = dict(TINY_CLIP)
        model = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=cfg["quick_gelu"])
        pre = ClipPreprocess(size=cfg["vision_cfg"]["image_size"])
        return cls(model.to(device), pre, SimpleTokenizer(context_length=77), "tiny-clip", f"random(seed={seed})",
                   device=device)

    @classmethod
    def load(cls, model_name: str = "ViT-L-14-336", pretrained: str = "openai", weights: str | None = None,
             device="cpu", precision: str = "fp32") -> "ClipEncoder":
        """open_clip `model_name` with the `pretrained` tag, or with local `weights` (a file or a folder).

        pretrained="random" gives random weights. With neither cached nor local weights and no network,
        raises WeightsNotFoundError naming the file to fetch.
        """
        import open_clip
        from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

        model_name = model_name.replace("/", "-")
        if model_name == "tiny":
            return cls.tiny(device=device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose one of {list(PRECISIONS)}")
        if precision != "fp32" and torch.device(device).type == "cpu":
            raise ValueError(f"precision {precision} needs a GPU (--device cuda); on CPU use fp32")
        if model_name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model_name!r}; e.g. ViT-B-32, ViT-B-16, ViT-L-14, "
                             "ViT-L-14-336 (see open_clip.list_models())")
        tag_cfg = get_pretrained_cfg(model_name, pretrained) if pretrained else {}
        quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        label = pretrained
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.exists():
                raise WeightsNotFoundError(f"CLIP weights {path} do not exist")
            if path.is_dir():
                if (path / "open_clip_config.json").is_file():
                    model = open_clip.create_model(f"local-dir:{path}", device=device, precision=precision)
                    return cls._finish(model, tokenizer=open_clip.get_tokenizer(f"local-dir:{path}"),
                                       name=model_name, weights=str(path), tag_cfg=tag_cfg, device=device,
                                       precision=precision)
                path = _checkpoint_in_folder(path)
            source, label = str(path), f"{pretrained}:{path.name}" if pretrained else str(path)
        elif pretrained in (None, "", "random", "none"):
            source, label = None, "random"
        elif not tag_cfg:
            raise ValueError(f"no pretrained tag {pretrained!r} for {model_name}; its tags are "
                             f"{list_pretrained_tags_by_model(model_name)} (or pass --clip-weights FILE)")
        else:
            found, wanted = _weights_where(model_name, pretrained)
            if found:
                source = found[0]
            elif _online("huggingface.co") or _online("openaipublic.azureedge.net"):
                source = pretrained  # let open_clip download it into its cache
            else:
                raise WeightsNotFoundError(
                    f"no local weights for {model_name} '{pretrained}' and no network: download {wanted}, "
                    "then pass the file with --clip-weights PATH (or ClipEncoder.load(weights=PATH))")
        if source is not None and Path(source).is_file() and _is_torchscript(Path(source)):
            # OpenAI's original release is a TorchScript archive; open_clip rebuilds it (QuickGELU) from its state dict
            from open_clip.openai import load_openai_model
            model = load_openai_model(source, precision=precision, device=device)
        else:
            model = open_clip.create_model(model_name, pretrained=source, device=device, precision=precision,
                                           force_quick_gelu=quick_gelu)
        return cls._finish(model, open_clip.get_tokenizer(model_name), model_name, label, tag_cfg, device, precision)

    @classmethod
    def _finish(cls, model, tokenizer, name, weights, tag_cfg, device, precision) -> "ClipEncoder":
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        pre = ClipPreprocess(size=int(size), mean=tuple(tag_cfg.get("mean", CLIP_MEAN)),
                             std=tuple(tag_cfg.get("std", CLIP_STD)),
                             resize_mode="squash" if tag_cfg.get("resize_mode") == "squash" else "shortest")
        return cls(model, pre, tokenizer, name, weights, device=device, precision=precision)

    # -- encoding ---------------------------------------------------------------------------------------
    def _autocast(self):
        if self.dtype == torch.float32 or self.device.type == "cpu":
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N,3,S,S] (from `preprocess.crop`) -> float32 [N, embed_dim] on CPU."""
        x = self.preprocess.normalize(images.to(self.device, non_blocking=True))
        with self._autocast():
            return self.model.encode_image(x).float().cpu()

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> (sentence [N, D], words [N, 77, D]), float32 on CPU.

        words are the ln_final states at every context position (SOT, words, EOT, padding) @ text_projection;
        sentence is the same at the pooled (EOT) position, i.e. exactly `model.encode_text`.
        """
        from open_clip.model import text_global_pool
        from open_clip.transformer import TextTransformer

        tokens = self.tokenizer(texts).to(self.device)  # [N, 77]
        m = self.model
        tower = m.text if hasattr(m, "text") else m
        if hasattr(m, "text") and not isinstance(m.text, TextTransformer) or getattr(tower, "cls_emb", None) is not None:
            raise NotImplementedError(f"word features need a CLIP-style text transformer; {self.name} has "
                                      f"{type(tower).__name__}")
        with self._autocast():
            if tower is m:  # open_clip CLIP: the text tower's parts live on the model itself
                cast = m.transformer.get_cast_dtype()
                x = m.token_embedding(tokens).to(cast) + m.positional_embedding.to(cast)  # [N,77,W]
                x = m.transformer(x, attn_mask=m.attn_mask)
                pool_type, eos = m.text_pool_type, getattr(m, "text_eos_id", None)
            else:
                x, attn_mask = tower._embeds(tokens)
                x = tower.transformer(x, attn_mask=attn_mask)
                pool_type, eos = tower.pool_type, getattr(tower, "eos_id", None)
            x = tower.ln_final(x)  # [N,77,W]
            pooled = text_global_pool(x, tokens, pool_type, eos_token_id=eos)  # [N,W]
            proj = tower.text_projection
            project = proj if isinstance(proj, torch.nn.Linear) else (lambda h: h @ proj)
            words, sentence = project(x), project(pooled)  # [N,77,D], [N,D]
        return sentence.float().cpu(), words.float().cpu()

    @property
    def input(self) -> str:  # the visual interface's description of what it reads
        return (f"one RGB frame per second, CLIP preprocessing (bicubic {self.preprocess.resize_mode}-side resize to "
                f"{self.preprocess.size}, center crop, CLIP mean/std), encode_image")

    text_input = ("filled text without '?', CLIP tokens (77), EOT state @ text_projection and all 77 states @ "
                  "text_projection")

    def describe(self) -> dict:
        return {"visual_extractor": f"open_clip:{self.name}", "clip_weights": self.weights,
                "clip_image_size": self.preprocess.size, "clip_embed_dim": self.embed_dim,
                "clip_precision": self.precision}


# -- VGGish ---------------------------------------------------------------------------------------------------
def vggish_log_mel(audio: np.ndarray) -> np.ndarray:
    """[T, 16000] float waveform -> [T, 96, 64] log-mel patches: each second on its own, its first 96 frames."""
    from torchvggish import mel_features, vggish_params as p

    patches = np.empty((len(audio), VGGISH_FRAMES, VGGISH_BANDS), np.float32)
    for t, chunk in enumerate(audio):
        log_mel = mel_features.log_mel_spectrogram(
            chunk.astype(np.float64), audio_sample_rate=p.SAMPLE_RATE, log_offset=p.LOG_OFFSET,
            window_length_secs=p.STFT_WINDOW_LENGTH_SECONDS, hop_length_secs=p.STFT_HOP_LENGTH_SECONDS,
            num_mel_bins=p.NUM_MEL_BINS, lower_edge_hertz=p.MEL_MIN_HZ, upper_edge_hertz=p.MEL_MAX_HZ)  # [98,64]
        patches[t] = log_mel[:VGGISH_FRAMES]
    return patches


class VGGishEncoder:
    """torchvggish's VGG without the PCA/quantisation postprocessor: the raw 128-d `vggish/embedding`."""

    dim = 128
    sample_rate = 16000  # what its log-mel front end expects (torchvggish's vggish_params.SAMPLE_RATE)
    input = "16 kHz mono, each second alone, first 96 log-mel frames, VGGish pre-PCA"
    preprocess = staticmethod(vggish_log_mel)  # [T, 16000] waveform -> [T, 96, 64] log-mel patches

    def __init__(self, model, weights: str, device="cpu"):
        self.model = model.eval().requires_grad_(False).to(device)
        self.weights, self.device = weights, torch.device(device)
        self.name = "vggish" if not weights.startswith("random") else "random-vggish"

    @staticmethod
    def default_path() -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / VGGISH_FILE

    @classmethod
    def load(cls, weights: str | None = None, device="cpu", random_init: bool = False, seed: int = 0):
        from torchvggish.torchvggish import VGG, make_layers

        torch.manual_seed(seed)
        model = VGG(make_layers(), postprocess=False)
        if random_init:
            return cls(model, f"random(seed={seed})", device)
        path = Path(weights).expanduser() if weights else cls.default_path()
        if not path.is_file():
            if weights:
                raise WeightsNotFoundError(f"VGGish weights {path} do not exist")
            if not _online("github.com"):
                raise WeightsNotFoundError(
                    f"VGGish weights {VGGISH_FILE} not found at {path} and no network: download {VGGISH_URL} "
                    f"to {path} (or anywhere, and pass --vggish-weights PATH)")
            torch.hub.load_state_dict_from_url(VGGISH_URL, progress=True)  # lands at default_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return cls(model, path.name, device)

    @torch.inference_mode()
    def encode(self, patches: torch.Tensor | np.ndarray) -> torch.Tensor:
        """[N, 96, 64] log-mel patches -> [N, 128] float32 on CPU (always fp32: VGGish is cheap)."""
        x = torch.as_tensor(patches, dtype=torch.float32).to(self.device)[:, None]  # [N,1,96,64]
        return self.model(x).float().cpu()

    def describe(self) -> dict:
        return {"audio_extractor": "torchvggish:vggish(pre-PCA)", "vggish_weights": self.weights}


# -- the interface and the registries --------------------------------------------------------------------------
@runtime_checkable
class AudioEncoder(Protocol):
    """One-second waveforms at `sample_rate` -> one `dim`-wide vector per second."""
    name: str
    dim: int
    sample_rate: int  # Hz of the waveforms it reads; the decoders resample to it
    input: str        # what it reads, in words (the store's protocol record)

    def preprocess(self, audio: np.ndarray) -> Any: ...  # [T, sample_rate] float waveform -> a stackable [T, ...]

    def encode(self, inputs) -> torch.Tensor: ...  # [N, ...] -> float32 [N, dim] on CPU

    def describe(self) -> dict: ...


@runtime_checkable
class VisualEncoder(Protocol):
    """One frame per second -> one `dim`-wide vector per frame."""
    name: str
    dim: int
    input: str            # what it reads, in words (the store's protocol record)
    preprocess: Callable  # one upright RGB PIL image -> a tensor [C, H, W] (runs in decode workers)

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...  # [N, C, H, W] -> float32 [N, dim] on CPU

    def describe(self) -> dict: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Question texts -> a sentence feature [dim] and 77 word features [77, dim] (CLIP's text path)."""
    name: str
    dim: int
    weights: str
    text_input: str  # what it reads, in words (the store's protocol record)
    tokenizer: Any   # CLIP BPE: token counts for mask_padding

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class EncoderOptions:
    """What a factory may read: device, precision and weight locations (each factory uses its own)."""
    device: str = "cpu"
    precision: str = "fp32"
    clip_model: str = "ViT-L-14-336"
    pretrained: str = "openai"
    clip_weights: str | None = None
    vggish_weights: str | None = None
    text_model: str = "ViT-L-14-336"  # the question encoder's CLIP (the paper's), whatever the visual encoder


AUDIO_ENCODERS: dict[str, Callable[[EncoderOptions], AudioEncoder]] = {}
VISUAL_ENCODERS: dict[str, Callable[[EncoderOptions], VisualEncoder]] = {}
TEXT_ENCODERS: dict[str, Callable[[EncoderOptions], TextEncoder]] = {}
DEFAULT_AUDIO_ENCODER, DEFAULT_VISUAL_ENCODER, DEFAULT_TEXT_ENCODER = "vggish", "clip", "clip"
TINY_ENCODERS = {"audio": "random-vggish", "visual": "tiny-clip", "text": "tiny-clip"}  # `--encoders tiny`


def register_audio_encoder(name: str):
    def add(factory):
        AUDIO_ENCODERS[name] = factory
        return factory
    return add


def register_visual_encoder(name: str):
    def add(factory):
        VISUAL_ENCODERS[name] = factory
        return factory
    return add


def register_text_encoder(name: str):
    def add(factory):
        TEXT_ENCODERS[name] = factory
        return factory
    return add


def _build(registry: dict, kind: str, name: str, options: EncoderOptions | None):
    if name not in registry:
        raise ValueError(f"unknown {kind} encoder {name!r}; choose one of {sorted(registry)} "
                         f"(or register one with register_{kind}_encoder)")
    return registry[name](options or EncoderOptions())


def build_audio_encoder(name: str = DEFAULT_AUDIO_ENCODER, options: EncoderOptions | None = None) -> AudioEncoder:
    return _build(AUDIO_ENCODERS, "audio", name, options)


def build_visual_encoder(name: str = DEFAULT_VISUAL_ENCODER, options: EncoderOptions | None = None) -> VisualEncoder:
    return _build(VISUAL_ENCODERS, "visual", name, options)


def build_text_encoder(name: str = DEFAULT_TEXT_ENCODER, options: EncoderOptions | None = None) -> TextEncoder:
    return _build(TEXT_ENCODERS, "text", name, options)


@register_audio_encoder("vggish")
def _vggish(o: EncoderOptions) -> VGGishEncoder:
    """torchvggish release weights (vggish-10086976.pth), pre-PCA 128-d: the paper's audio features."""
    return VGGishEncoder.load(o.vggish_weights, device=o.device)


@register_audio_encoder("random-vggish")
def _random_vggish(o: EncoderOptions) -> VGGishEncoder:
    """The full-size VGGish with random weights (tests and benchmarks: its cost is the real one)."""
    return VGGishEncoder.load(random_init=True, device=o.device)


@register_visual_encoder("clip")
def _clip(o: EncoderOptions) -> ClipEncoder:
    """open_clip `--clip-model` (default ViT-L/14@336) with `--pretrained` (default 'openai') or `--clip-weights`."""
    return ClipEncoder.load(o.clip_model, o.pretrained, o.clip_weights, device=o.device, precision=o.precision)


@register_visual_encoder("tiny-clip")
@register_text_encoder("tiny-clip")
def _tiny_clip(o: EncoderOptions) -> ClipEncoder:
    """A random 2-layer CLIP with 768-d output (TINY_CLIP): tests and pipeline benchmarks."""
    return ClipEncoder.tiny(device=o.device)


@register_text_encoder("clip")
def _clip_text(o: EncoderOptions) -> ClipEncoder:
    """The text tower of open_clip `--text-model` (default ViT-L/14@336, the paper's question encoder) with
    `--pretrained`; `--clip-weights` when it names the same model as the visual CLIP."""
    weights = o.clip_weights if o.text_model == o.clip_model else None
    return ClipEncoder.load(o.text_model, o.pretrained, weights, device=o.device, precision=o.precision)


def encoder_attrs(audio: AudioEncoder | None, visual: VisualEncoder | None) -> dict:
    """The store attributes naming the encoders and their widths (the store checks items against the widths)."""
    attrs = {}
    if audio is not None:
        attrs.update(audio.describe(), audio_encoder=audio.name, audio_dim=audio.dim,
                     audio_sample_rate=audio.sample_rate)
    if visual is not None:
        attrs.update(visual.describe(), visual_encoder=visual.name, visual_dim=visual.dim)
    return attrs


def encoders_protocol(audio: AudioEncoder | None, visual: VisualEncoder | None, text: TextEncoder | None) -> str:
    """The encoders' part of a store's `protocol` record, from their own descriptions (`input`, `text_input`)."""
    parts = [f"visual = {visual.name}: {visual.input}" if visual is not None else "",
             f"audio = {audio.name}: {audio.input}" if audio is not None else "",
             f"question = {text.name}: {text.text_input}" if text is not None else ""]
    return "; ".join(p for p in parts if p)
