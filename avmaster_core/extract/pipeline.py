"""Resumable, sharded feature extraction into the HDF5 store, and `avmaster extract` (`avmaster ask`: asking.py).

Two extraction routes decode a video (`routes.py`, docs/extraction.md): `--route official` (the default)
emulates the scripts that made the released MUSIC-AVQA features (ffmpeg `-r 1` JPEG frames, moviepy's
sample-picking 16 kHz resampler); `--route clean` takes the frame on screen at each whole second and
resamples with an anti-alias filter (for new data). A store holds one route only.
Encoders come from the registries in `encoders.py` (`--audio-encoder`, `--visual-encoder`); the store
takes its widths from them.

Videos are decoded (and CLIP-cropped, and turned into log-mel patches) in DataLoader worker processes
while the main process runs the encoders on batches of frames pooled across videos. Each finished video
is written atomically (audio, then visual); a rerun skips videos that have both, so Ctrl-C or a crash
loses only the videos in flight. Unusable files go to `<store>.failures.json` with the reason and the run
goes on; videos extracted with a caveat (no audio track, silent audio, padded to T seconds) are listed
there under "warnings". `--shard i/n` takes every n-th video starting at i and writes its own store
(`<stem>.shard-i-of-n.h5`); `avmaster store merge` joins the shards.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..core.atomic import write_json
from ..core.options import AT_LEAST_0, AT_LEAST_1
from ..core.store import TOKENS_ATTR, FeatureStore
from ..core.vocab import question_text
from ..data.annotations import load_annotations
from .candidates import extract_dataset_choices
from .encoders import (AUDIO_ENCODERS, DEFAULT_AUDIO_ENCODER, DEFAULT_TEXT_ENCODER, DEFAULT_VISUAL_ENCODER,
                       TEXT_ENCODERS, TINY_ENCODERS, VISUAL_ENCODERS, AudioEncoder, ClipEncoder, EncoderOptions,
                       TextEncoder, VGGishEncoder, VisualEncoder, WeightsNotFoundError, build_audio_encoder,
                       build_text_encoder, build_visual_encoder, encoder_attrs, encoders_protocol, open_clip_module)
from .routes import DEFAULT_ROUTE, LEGACY_PROTOCOLS, ROUTES, Route, check_route, get_route, route_attrs
from .video import VideoDecodeError, check_video, list_videos, pyav

PROTOCOL = LEGACY_PROTOCOLS["clean"]  # kept for callers of the name; a store's record is routes.route_attrs's


# -- sharding and bookkeeping ------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4 (shard 0 of 4)") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard_store_path(out: str | Path, shard: tuple[int, int]) -> Path:
    out = Path(out)
    i, n = shard
    return out if n == 1 else out.with_name(f"{out.stem}.shard-{i}-of-{n}{out.suffix or '.h5'}")


def failures_path(store_path: str | Path) -> Path:
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".failures.json")


class FailureLog:
    """`<store>.failures.json`: {"failures": {video_id: {path, reason}}, "warnings": {video_id: {path, reasons}}}.

    Entries persist across reruns; a video that later succeeds leaves "failures"."""

    def __init__(self, path: Path):
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.failures: dict = data.get("failures", {})
        self.warnings: dict = data.get("warnings", {})

    def fail(self, video_id: str, path, reason: str) -> None:
        self.failures[video_id] = {"path": str(path), "reason": reason}

    def succeed(self, video_id: str, path, warnings: list[str]) -> None:
        self.failures.pop(video_id, None)
        if warnings:
            self.warnings[video_id] = {"path": str(path), "reasons": warnings}
        else:
            self.warnings.pop(video_id, None)

    def save(self) -> None:
        write_json(self.path, {"failures": self.failures, "warnings": self.warnings}, indent=1, sort_keys=True)


def _check_provenance(store: FeatureStore, attrs: dict) -> None:
    """Refuse to mix features from different encoders in one store."""
    old = store.attrs
    clashes = {k: (old[k], v) for k, v in attrs.items() if k in old and str(old[k]) != str(v)}
    if clashes:
        details = "; ".join(f"{k}: store has {a!r}, this run {b!r}" for k, (a, b) in clashes.items())
        raise ValueError(f"{store.path} was made with other settings ({details}); write to another --out")


# -- decoding in workers ---------------------------------------------------------------------------------
class _DecodeJobs(torch.utils.data.Dataset):
    """Item i: video i decoded by the route and preprocessed for both encoders, or the reason it failed."""

    def __init__(self, videos: list[tuple[str, Path]], seconds: int | None, route: Route,
                 frame_preprocess: Callable, audio_preprocess: Callable, sample_rate: int):
        self.videos, self.seconds, self.route, self.sample_rate = videos, seconds, route, sample_rate
        self.frame_preprocess, self.audio_preprocess = frame_preprocess, audio_preprocess

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        video_id, path = self.videos[i]
        try:
            decoded = self.route.decode(path, self.seconds, frame_transform=self.frame_preprocess,
                                        sample_rate=self.sample_rate)
            decoded.info["stated_duration_s"] = stated_duration(path)
            return {"video_id": video_id, "path": str(path), "info": decoded.info,
                    "frames": torch.stack(decoded.frames),  # e.g. CLIP: uint8 [T,3,S,S]
                    "patches": torch.as_tensor(self.audio_preprocess(decoded.audio))}  # e.g. VGGish: [T,96,64]
        except VideoDecodeError as e:
            return {"video_id": video_id, "path": str(path), "error": str(e)}
        except Exception as e:  # noqa: BLE001 - one bad file must never stop the run
            return {"video_id": video_id, "path": str(path), "error": f"{type(e).__name__}: {e}"}


def _single(item):  # collate for batch_size=None: keep the dict as it is (module level: picklable)
    return item


def stated_duration(path) -> float | None:
    """The length (s) the container's header states, or None when it states none."""
    av = pyav()

    try:
        with av.open(str(path)) as container:
            return None if container.duration is None else round(container.duration / 1e6, 3)
    except (av.error.FFmpegError, OSError):
        return None


LENGTH_TOLERANCE_S = 1.0  # headers say 60.02 s for a 60-s clip: only a larger gap is worth a warning


def decode_warnings(info: dict, seconds: int | None = None) -> list[str]:
    """What was changed or is unusual about one extracted video (listed in failures.json and the store)."""
    out = []
    if info.get("audio_missing"):
        out.append("no audio track: audio features are of silence")
    elif info.get("audio_silent"):
        out.append("audio track is silent")
    padded, used, stated = info.get("padded_seconds") or 0, info.get("seconds"), info.get("stated_duration_s")
    if padded:
        out.append(f"shorter than {used} s: last {padded} s padded (last frame repeated, silence)")
    if stated is None or used is None:
        return out
    short = _decodable_end(info, seconds)
    if short is not None and stated - short[1] > LENGTH_TOLERANCE_S:
        out.append(f"decodable length {short[1]:.1f} s ({short[0]}) differs from the {stated:.1f} s the file's "
                   "header states (truncated download?): check the file")
    elif seconds is not None and stated > seconds + LENGTH_TOLERANCE_S:
        out.append(f"cut to its first {seconds} s of {stated:.1f} s (--seconds {seconds}; "
                   "--seconds all keeps each video's own length)")
    return out


def _decodable_end(info: dict, seconds: int | None) -> tuple[str, float] | None:
    """("video" | "audio", where decoding ended) when a stream ended before the seconds asked for; else None.

    Decoders stop reading once they have `seconds`, so only an end before that is known to be the file's."""
    ends = []
    if info.get("padded_seconds"):
        ends.append(("video", float(info["seconds"] - info["padded_seconds"])))
    audio = info.get("audio_duration_s")
    if not info.get("audio_missing") and audio is not None and (seconds is None or audio < seconds):
        ends.append(("audio", float(audio)))
    return min(ends, key=lambda e: e[1]) if ends else None


@dataclass
class ExtractSummary:
    store: str
    total: int = 0
    skipped: int = 0
    extracted: int = 0
    failed: int = 0
    warned: int = 0
    frames: int = 0
    wall_s: float = 0.0
    notes: list = field(default_factory=list)  # "video <id>: <warning>" of this run's videos

    @property
    def videos_per_s(self) -> float:
        return self.extracted / self.wall_s if self.wall_s else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def line(self) -> str:
        return (f"{self.store}: {self.extracted} extracted, {self.skipped} already there, {self.failed} failed, "
                f"{self.warned} with warnings; {self.frames} frames in {self.wall_s:.1f} s = "
                f"{self.frames_per_s:.1f} frames/s, {self.videos_per_s:.2f} videos/s")


def _prepare_store(store: FeatureStore, store_path: Path, route, run_attrs: dict, audio: AudioEncoder,
                   visual: VisualEncoder) -> None:
    """Refuse a store made by another route, encoders or length; record this run's; fix its widths."""
    check_route(store.attrs, route, store_path)
    _check_provenance(store, run_attrs)
    store.set_attrs(**run_attrs)
    store.expect_widths(audio_dim=audio.dim, visual_dim=visual.dim)


def extract_videos(videos: dict[str, Path] | str | Path, out: str | Path, visual: VisualEncoder, audio: AudioEncoder,
                   seconds: int | None = 60, batch_frames: int = 256, workers: int = 2,
                   shard: tuple[int, int] = (0, 1), limit: int | None = None, progress: bool = True,
                   on_video_done: Callable[[str], None] | None = None, route: str = DEFAULT_ROUTE) -> ExtractSummary:
    """Extract audio and visual features of `videos` (a folder or {video_id: path}) into the store `out`.

    route: "official" (as the released MUSIC-AVQA features) or "clean" (for new data); see routes.py.
    Resumable: videos already in the store are skipped. `on_video_done(video_id)` is called after each
    write (tests use it to interrupt a run). Returns counts and throughput.
    """
    if not isinstance(videos, dict):
        videos = list_videos(videos)
    store_path = shard_store_path(out, shard)
    ids = sorted(videos)[shard[0]::shard[1]]
    if limit is not None:
        ids = ids[:limit]
    summary = ExtractSummary(store=str(store_path), total=len(ids))
    route = get_route(route)
    run_attrs = {**encoder_attrs(audio, visual), **route_attrs(route, audio, visual),
                 "seconds": "video length" if seconds is None else int(seconds)}
    log = FailureLog(failures_path(store_path))
    start = time.perf_counter()
    with FeatureStore(store_path, "a") as store:
        _prepare_store(store, store_path, route, run_attrs, audio, visual)
        todo = [(v, Path(videos[v])) for v in ids if not (store.has("audio", v) and store.has("visual", v))]
        summary.skipped = len(ids) - len(todo)
        loader = torch.utils.data.DataLoader(
            _DecodeJobs(todo, seconds, route, visual.preprocess, audio.preprocess, audio.sample_rate), batch_size=None,
            collate_fn=_single,
            num_workers=workers, prefetch_factor=4 if workers else None, persistent_workers=False)
        bar = tqdm(total=len(todo), unit="video", disable=not progress, desc="extract", dynamic_ncols=True)
        pending: list[dict] = []

        def flush() -> None:
            if not pending:
                return
            frames = torch.cat([p["frames"] for p in pending])  # uint8 [sum T, 3, S, S]
            visual_features = torch.cat([visual.encode(chunk) for chunk in frames.split(batch_frames)])  # [sum T, D]
            audio_features = audio.encode(torch.cat([p["patches"] for p in pending]))  # [sum T, audio dim]
            offset = 0
            for p in pending:
                t = len(p["frames"])
                info = {k: v for k, v in p["info"].items() if isinstance(v, (int, float, str, bool))}
                warnings = decode_warnings(p["info"], seconds)
                item_attrs = {"source": Path(p["path"]).name, **info, "warnings": "; ".join(warnings)}
                store.put("audio", p["video_id"], audio_features[offset:offset + t].numpy(), **item_attrs)
                store.put("visual", p["video_id"], visual_features[offset:offset + t].numpy(), **item_attrs)
                offset += t
                log.succeed(p["video_id"], p["path"], warnings)
                summary.notes.extend(f"video {p['video_id']}: {w}" for w in warnings)
                summary.extracted += 1
                summary.warned += bool(warnings)
                summary.frames += t
                bar.update(1)
                if on_video_done:
                    on_video_done(p["video_id"])
            pending.clear()
            log.save()
            elapsed = time.perf_counter() - start
            bar.set_postfix(frames_per_s=f"{summary.frames / elapsed:.1f}", failed=summary.failed)

        try:
            for item in loader:
                if "error" in item:
                    log.fail(item["video_id"], item["path"], item["error"])
                    summary.failed += 1
                    bar.update(1)
                    continue
                pending.append(item)
                if sum(len(p["frames"]) for p in pending) >= batch_frames:
                    flush()
            flush()
        finally:
            log.save()
            bar.close()
    summary.wall_s = time.perf_counter() - start
    return summary


def extract_questions(questions: dict[int, str] | Iterable[tuple[int, str]], out: str | Path, clip: ClipEncoder,
                      batch_size: int = 256, progress: bool = True) -> int:
    """Write sentence [D] and word [77, D] features for each question_id -> filled question text. Resumable.
    Each words item records the question's CLIP token count (store.TOKENS_ATTR, for mask_padding); a question
    already stored without one only gets its count (tokenized, not re-encoded)."""
    items = dict(questions)
    attrs = {"text_extractor": f"open_clip:{clip.name}", "text_weights": clip.weights, "text_dim": clip.dim,
             "text_protocol": encoders_protocol(None, None, clip)}
    written = 0
    with FeatureStore(out, "a") as store:
        _check_provenance(store, attrs)
        store.set_attrs(**attrs)
        store.expect_widths(text_dim=clip.dim)
        # A question is (re)extracted when absent, or when its stored text hash differs (its text changed);
        # items written before hashes were recorded carry none and are kept.
        todo = [q for q in items if not (store.has("question", q) and store.has("words", q))
                or store.file[f"question/{q}"].attrs.get("text_sha1", text_hash(items[q])) != text_hash(items[q])]
        for start in tqdm(range(0, len(todo), batch_size), desc="questions", unit="batch", disable=not progress):
            batch = todo[start:start + batch_size]
            texts = [question_text(items[q]) for q in batch]
            sentence, words = clip.encode_text(texts)  # [N,D], [N,77,D]
            for j, (q, tokens) in enumerate(zip(batch, token_counts(texts, clip.tokenizer))):
                digest = text_hash(items[q])
                store.put("question", q, sentence[j].numpy(), text_sha1=digest)
                store.put("words", q, words[j].numpy(), text_sha1=digest, **{TOKENS_ATTR: tokens})
                written += 1
        extracted = set(todo)
        record_token_counts(store, {q: t for q, t in items.items() if q not in extracted}, clip.tokenizer)
    return written


def token_counts(texts: list[str], tokenizer=None) -> list[int]:
    """CLIP tokens of each text as the text encoder sees it: start token, words, end token (at most 77).
    The tokenizer is CLIP's BPE (open_clip's SimpleTokenizer, shared by the CLIP models we use)."""
    if tokenizer is None:
        tokenizer = open_clip_module().tokenizer.SimpleTokenizer(context_length=77)
    return [int(n) for n in (tokenizer(texts) != 0).sum(dim=1)]  # padding is token 0


def record_token_counts(store: FeatureStore, questions: dict, tokenizer=None, batch_size: int = 4096) -> int:
    """Add the token count (store.TOKENS_ATTR) to every stored words item of `questions` (question_id ->
    text) that has none; returns how many were added. Tokenizes only: the features are not touched.
    A stored item whose text hash (text_sha1, recorded at extraction) differs from the text given was made
    from another question: ValueError naming them (the first 20 and a count), nothing written."""
    stored = [q for q in questions if store.has("words", q)]
    other = [q for q in stored if store.file[f"words/{q}"].attrs.get("text_sha1", text_hash(questions[q]))
             != text_hash(questions[q])]
    if other:
        more = f" and {len(other) - 20} more" if len(other) > 20 else ""
        raise ValueError(f"{len(other)} stored question(s) were extracted from other texts than the ones given "
                         f"(question_id(s) {', '.join(map(str, other[:20]))}{more}): these annotations are not the "
                         "store's (another dataset?); nothing was written")
    todo = [q for q in stored if TOKENS_ATTR not in store.file[f"words/{q}"].attrs]
    for start in range(0, len(todo), batch_size):
        part = todo[start:start + batch_size]
        for q, tokens in zip(part, token_counts([question_text(questions[q]) for q in part], tokenizer)):
            store.set_item_attrs("words", q, **{TOKENS_ATTR: tokens})
    return len(todo)


def text_hash(question: str) -> str:
    """sha1 of the text CLIP sees: a stored question is re-extracted when its text changed."""
    return hashlib.sha1(question_text(question).encode("utf-8")).hexdigest()


def load_question_table(records: str | Path | None = None, dataset: str | None = None, split: str | None = None,
                        root: str | Path | None = None) -> dict[int, str]:
    """question_id -> filled question text, from a records file (csv/json/jsonl/parquet) or load_annotations."""
    if records is not None:
        path = Path(records)
        readers = {".csv": pd.read_csv, ".json": pd.read_json, ".parquet": pd.read_parquet,
                   ".jsonl": lambda p: pd.read_json(p, lines=True)}
        if path.suffix not in readers:
            raise ValueError(f"records file {path}: expected one of {sorted(readers)}")
        table = readers[path.suffix](path)
    else:
        splits = [split] if split else ["train", "val", "test"]
        table = pd.concat([load_annotations(dataset, s, root) for s in splits])
    where = f"records file {records}" if records is not None else f"{dataset} annotations under {root}"
    missing = {"question_id", "question"} - set(table.columns)
    if missing:
        raise ValueError(f"{where} lacks the column(s) {sorted(missing)}: give question_id and question")
    return _checked_question_table(table, where)


def _checked_question_table(table, where: str) -> dict[int, str]:
    """question_id -> text; one ValueError for ids that are not integers, empty questions and ids given with
    different texts."""
    ids = pd.to_numeric(table["question_id"], errors="coerce")
    bad = ids.isna() | (ids != ids.round())
    problems = []
    if bad.any():
        problems.append(f"{int(bad.sum())} question_id(s) are not integers (e.g. "
                        f"{table.loc[bad, 'question_id'].head(5).tolist()} at row(s) "
                        f"{[int(i) + 1 for i in table.index[bad][:5]]})")
    text = table["question"].map(lambda q: "" if q is None or (isinstance(q, float) and q != q) else str(q))
    empty = text.map(question_text) == ""  # an empty cell would otherwise be stored as the text "nan"
    if empty.any():
        problems.append(f"{int(empty.sum())} question(s) are empty (question_id(s) "
                        f"{table.loc[empty, 'question_id'].head(20).tolist()} at row(s) "
                        f"{[int(i) + 1 for i in table.index[empty][:20]]})")
    keep = ~bad & ~empty
    table = pd.DataFrame({"question_id": ids[keep].astype("int64"), "question": text[keep]})
    table["seen_as"] = table["question"].map(question_text)  # what CLIP sees: "Is it?" and "Is it" agree
    unique = table.drop_duplicates(["question_id", "seen_as"])
    clashes = unique["question_id"][unique["question_id"].duplicated()].unique()
    if len(clashes):
        q = int(clashes[0])
        variants = unique.loc[unique["question_id"] == q, "question"].tolist()[:2]
        problems.append(f"{len(clashes)} question_id(s) appear with different texts (e.g. {q}: {variants[0]!r} "
                        f"and {variants[1]!r})")
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}: give each question its own integer id and a text, "
                         "and rerun")
    return dict(zip(unique["question_id"], unique["question"]))


# -- encoders from command-line options ---------------------------------------------------------------------
def extract_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    return name


def _encoder_options(args) -> EncoderOptions:
    device = extract_device(args.device)
    precision = args.precision if args.precision != "auto" else ("fp16" if device.startswith("cuda") else "fp32")
    return EncoderOptions(device=device, precision=precision, clip_model=args.clip_model,
                          pretrained=args.pretrained, clip_weights=args.clip_weights,
                          vggish_weights=args.vggish_weights, text_model=args.text_model)


def build_encoders(args, need_audio: bool = True) -> tuple[VisualEncoder, AudioEncoder | None]:
    """(visual, audio) encoders named by --visual-encoder / --audio-encoder (`--encoders tiny`: the test pair)."""
    options = _encoder_options(args)
    visual_name, audio_name = args.visual_encoder, args.audio_encoder
    if args.encoders == "tiny":
        visual_name, audio_name = TINY_ENCODERS["visual"], TINY_ENCODERS["audio"]
    with _weights_named("--clip-weights", args.clip_weights):
        visual = build_visual_encoder(visual_name, options)
    with _weights_named("--vggish-weights", args.vggish_weights):
        audio = build_audio_encoder(audio_name, options) if need_audio else None
    return visual, audio


@contextlib.contextmanager
def _weights_named(flag: str, path: str | None):
    """A weights file that exists but does not load (truncated, not a checkpoint): an error naming it."""
    try:
        yield
    except (WeightsNotFoundError, ValueError):
        raise
    except Exception as e:  # noqa: BLE001 - torch/pickle/zip errors of a damaged file take many forms
        if path is None:
            raise
        detail = str(e).splitlines()[0] if str(e) else ""
        if "weights_only" in detail or not detail:  # torch's advice to unpickle anything: not for a damaged file
            detail = "not a weights file torch can read"
        raise ValueError(f"{flag} {path} ({Path(path).stat().st_size} bytes): the file cannot be loaded as weights "
                         f"({type(e).__name__}: {detail[:200]}); it may be truncated or another kind of file: "
                         "download it again") from None


def build_text(args, visual: VisualEncoder | None = None) -> TextEncoder:
    """The question encoder named by --text-encoder (`--encoders tiny`: tiny-clip), its own choice whatever the
    visual encoder; the visual encoder itself when it is that very CLIP (one model in memory, not two)."""
    options = _encoder_options(args)
    name = TINY_ENCODERS["text"] if args.encoders == "tiny" else args.text_encoder
    same = {"tiny-clip": "tiny-clip", "clip": options.text_model.replace("/", "-")}.get(name)
    if isinstance(visual, ClipEncoder) and same == visual.name and (
            name != "clip" or options.clip_model == options.text_model):
        return visual
    with _weights_named("--clip-weights", args.clip_weights if options.clip_model == options.text_model else None):
        return build_text_encoder(name, options)


def add_encoder_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoders")
    g.add_argument("--clip-model", default="ViT-L-14-336", help="open_clip model name (ViT-B-32, ViT-L-14, ...)")
    g.add_argument("--pretrained", default="openai", help="open_clip pretrained tag ('random' for random weights)")
    g.add_argument("--clip-weights", help="local CLIP checkpoint file or folder (instead of a download)")
    g.add_argument("--vggish-weights", help=f"local {VGGishEncoder.default_path().name} (instead of a download)")
    g.add_argument("--visual-encoder", choices=sorted(VISUAL_ENCODERS), default=DEFAULT_VISUAL_ENCODER,
                   help="clip: open_clip --clip-model/--pretrained (ViT-L/14@336, OpenAI weights); tiny-clip: random")
    g.add_argument("--audio-encoder", choices=sorted(AUDIO_ENCODERS), default=DEFAULT_AUDIO_ENCODER,
                   help="vggish: torchvggish release weights, pre-PCA 128-d; random-vggish: random weights")
    g.add_argument("--text-encoder", choices=sorted(TEXT_ENCODERS), default=DEFAULT_TEXT_ENCODER,
                   help="question features: clip = the text tower of --text-model (whatever the visual encoder); "
                        "tiny-clip: random")
    g.add_argument("--text-model", default="ViT-L-14-336",
                   help="open_clip model of the question encoder (default ViT-L/14@336, the paper's)")
    g.add_argument("--encoders", choices=["real", "tiny"], default="real",
                   help="tiny: shortcut for --visual-encoder tiny-clip --audio-encoder random-vggish (tests, benchmarks)")
    g.add_argument("--route", choices=sorted(ROUTES), default=DEFAULT_ROUTE,
                   help="official: as the released MUSIC-AVQA features were made (ffmpeg -r 1 JPEGs, moviepy 16 kHz "
                        "wav; use it for the authors' checkpoints and the paper's numbers); clean: frame on screen "
                        "at each second, anti-aliased resampling (new data). See docs/extraction.md")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="CLIP precision; auto = fp16 on GPU (as the official features), fp32 on CPU")
    g.add_argument("--seconds", default="60", help="segments per video (60 for MUSIC-AVQA) or 'all' (own length)")


def seconds_option(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--seconds {text!r}: a positive integer or 'all'")
    return int(text)


def _run_extract(args) -> int:
    if not args.videos and not (args.questions or args.records):
        print("avmaster extract: give --videos DIR and/or --questions DATASET / --records FILE", file=sys.stderr)
        return 2
    status = 0  # 3: some videos failed, 1: all of them did (failure list: <store>.failures.json)
    shard = parse_shard(args.shard)
    seconds = seconds_option(args.seconds)
    table = load_question_table(args.records, args.questions, args.split, args.root) \
        if args.questions or args.records else None  # ids and texts checked before any video work
    videos = list_videos(args.videos) if args.videos else None  # before the encoders load
    visual, audio = build_encoders(args, need_audio=bool(args.videos))
    text_encoder = build_text(args, visual) if table is not None else None
    if args.videos:
        summary = extract_videos(videos, args.out, visual, audio, seconds=seconds,
                                 batch_frames=args.batch_frames, workers=args.workers, shard=shard,
                                 limit=args.limit, route=args.route)
        print(summary.line())
        print_notes(summary.notes)
        if summary.failed:
            print(f"avmaster extract: {summary.failed} of {summary.total - summary.skipped} video(s) failed; "
                  f"reasons in {failures_path(summary.store)}", file=sys.stderr)
            status = 1 if summary.failed == summary.total - summary.skipped else 3
    if table is not None:
        ids = sorted(table)[shard[0]::shard[1]]
        n = extract_questions({q: table[q] for q in ids}, shard_store_path(args.out, shard), text_encoder,
                              batch_size=args.batch_questions)
        print(f"{n} question(s) extracted into {shard_store_path(args.out, shard)}")
        if args.questions:  # multiple-choice datasets (AVQA): the candidate answers, same text path
            n = extract_dataset_choices(args.questions, args.split, args.root, shard_store_path(args.out, shard),
                                        text_encoder, shard, args.batch_questions)
            if n:
                print(f"candidate answers of {n} question(s) extracted")
    return status


def print_notes(notes: list[str], limit: int = 20) -> None:
    """Warnings of this run's videos on stderr (the first `limit`; all are in failures.json and the store)."""
    for note in notes[:limit]:
        print(f"warning: {note}", file=sys.stderr)
    if len(notes) > limit:
        print(f"warning: ... and {len(notes) - limit} more (all listed under \"warnings\" in the failure list)",
              file=sys.stderr)


def register(subparsers) -> None:
    p = subparsers.add_parser("extract", help="features from raw videos / question text into an HDF5 store",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", help="folder of videos (searched recursively; video_id = file name stem)")
    p.add_argument("--out", required=True, help="HDF5 feature store to create or extend, e.g. data/features.h5")
    p.add_argument("--questions", metavar="DATASET", help="extract question features of this dataset's records")
    p.add_argument("--split", help="only this split of --questions (default: all)")
    p.add_argument("--root", help="annotation root folder for --questions")
    p.add_argument("--records", help="instead of --questions: a csv/json/jsonl/parquet with question_id, question")
    p.add_argument("--batch-frames", type=AT_LEAST_1, default=256, help="frames per CLIP batch (pooled over videos)")
    p.add_argument("--batch-questions", type=AT_LEAST_1, default=256)
    p.add_argument("--workers", type=AT_LEAST_0, default=min(8, max(1, (os.cpu_count() or 2) - 1)),
                   help="decoding processes (0: decode in the main process)")
    p.add_argument("--shard", default="0/1", help="i/n: this process takes videos i, i+n, ... into its own store")
    p.add_argument("--limit", type=AT_LEAST_1, help="at most this many videos (after sharding)")
    add_encoder_options(p)
    p.set_defaults(func=_run_extract, outputs={"out": "file"})
