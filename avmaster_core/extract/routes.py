"""Extraction routes: how a video becomes T frames and T one-second waveforms before the encoders.

- `official` (default for the MUSIC-AVQA family): the released features' scripts, emulated step by step
  (`official_route`): ffmpeg `-r 1` frame times, ffmpeg's own MJPEG pixels (libavcodec mjpeg, rate control,
  BT.601 decode), moviepy 1.0.1 sample-picking resampler,
  audio from the first audio sample. Use it to evaluate the authors' checkpoints or compare with the paper.
- `clean` (for new data): the frame on screen at each whole second, uncompressed pixels, an anti-aliased
  resampler, audio aligned to the first video frame (`video.decode_video`).
A store records its route (`route`, `route_params`) and refuses another one. `compare_routes` measures
how far apart the two are on one video; `plot_route_comparison` draws it (docs/extraction.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import official_route
from .video import decode_video


@dataclass(frozen=True)
class Route:
    name: str
    decode: Callable  # (path, seconds, frame_transform) -> DecodedVideo
    params: dict
    protocol: str  # the store's `protocol` attribute


CLEAN_PARAMS = {"audio": "libswresample to 16 kHz s16 per channel, channel mean / 32768, aligned to the first "
                         "video frame by the streams' timestamps",
                "frames": "the frame on screen at each whole second from the first video frame (last pts <= k)",
                "pixels": "libswscale RGB24 as tagged, uncompressed"}
ROUTES = {
    "official": Route("official", official_route.decode_video_official, official_route.PARAMS,
                      "avmaster-extract/official-2: ffmpeg -r 1 JPEG frames (libavcodec mjpeg at its defaults, BT.601), "
                      "moviepy 1.0.1 wav at the audio encoder's rate from the first audio sample"),
    "clean": Route("clean", decode_video, CLEAN_PARAMS,
                   "avmaster-extract/clean-2: T one-second segments from the first video frame; the frame on screen "
                   "at each whole second (last pts <= t), uncompressed; audio resampled (libswresample) to the audio "
                   "encoder's rate, s16/32768 channel mean"),
}
# The `protocol` of stores made before routes existed (today's clean route with CLIP + VGGish); and of official-route
# stores made before issue 23 (Pillow quality-75 JPEGs; their route_params say so too). Both stay readable.
LEGACY_PROTOCOLS = {
    "clean": "avmaster-extract/1: T one-second segments from the first video frame; visual = the frame on screen at "
             "each whole second (last pts <= t), CLIP preprocessing (bicubic shortest-side resize, center crop, CLIP "
             "mean/std), encode_image; audio = 16 kHz s16/32768 channel mean, each second alone, first 96 log-mel "
             "frames, VGGish pre-PCA; question = filled text without '?', CLIP EOT state @ text_projection and all "
             "77 states @ text_projection",
}
DEFAULT_ROUTE = "official"


def get_route(name: str) -> Route:
    if name not in ROUTES:
        raise ValueError(f"unknown extraction route {name!r}; choose one of {sorted(ROUTES)}")
    return ROUTES[name]


def route_attrs(route: Route, audio=None, visual=None, text=None) -> dict:
    """The store attributes of a route: its name, its steps, and the `protocol` record built from the route's
    own line and the encoders' descriptions (extract.encoders.encoders_protocol)."""
    from .encoders import encoders_protocol

    encoders = encoders_protocol(audio, visual, text)
    return {"route": route.name, "route_params": json.dumps(route.params, sort_keys=True),
            "protocol": route.protocol + (f"; {encoders}" if encoders else "")}


def check_route(store_attrs: dict, route: Route, store_path) -> None:
    """Refuse to add features of `route` to a store made by another route."""
    old = store_attrs.get("route")
    if old is None and store_attrs.get("protocol") == LEGACY_PROTOCOLS["clean"]:
        old = "clean"  # a store made before routes existed: its decoder is today's clean route
    if old is not None and str(old) != route.name:
        raise ValueError(f"{store_path} holds features made by the '{old}' extraction route; this run uses "
                         f"'{route.name}'. Routes cannot be mixed in one store: write to another --out, or rerun "
                         f"with --route {old}")
    saved = store_attrs.get("route_params")
    if old is not None and saved is not None:  # same route, another version of one of its steps
        changed = sorted(k for k, v in json.loads(saved).items() if route.params.get(k) != v)
        if changed:
            raise ValueError(f"{store_path} holds '{old}' features made with another {', '.join(changed)} step "
                             f"(store: {json.loads(saved)[changed[0]]!r}; now: {route.params.get(changed[0])!r}). "
                             "Its features stay readable; new ones go to another --out")


# -- the two routes side by side ---------------------------------------------------------------------------------
def _patch_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of the mean-centred log-mel patches, one value per second."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def pixel_psnr(video_path: str | Path, frames: int = 5) -> np.ndarray:
    """PSNR (dB) between the two routes' pixels of the same decoded frames (first `frames` frames)."""
    import av

    values, writer = [], official_route.FfmpegJpegWriter()
    with av.open(str(video_path)) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index >= frames:
                break
            clean = np.asarray(frame.to_image(), np.float64)
            official = np.asarray(official_route.decode_jpeg(writer.encode(frame)), np.float64)
            mse = np.mean((clean - official) ** 2)
            values.append(99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return np.array(values)


def compare_routes(video_path: str | Path, seconds: int | None = None) -> dict:
    """Decode `video_path` by both routes and measure the differences the encoders see.

    Returns {"table": a pandas DataFrame (one row per measure, with its unit), "log_mel": {route: [T,96,64]},
    "frame_times": {route: [T] s}, "audio": {route: [T,16000]}} for `plot_route_comparison`.
    """
    import pandas as pd

    from .encoders import vggish_log_mel

    clean = decode_video(video_path, seconds)
    official = official_route.decode_video_official(video_path, clean.seconds)
    mel = {"clean": vggish_log_mel(clean.audio), "official": vggish_log_mel(official.audio)}
    times = {"clean": np.arange(clean.seconds, dtype=float),  # the clean route shows the frame on screen at t = k
             "official": np.array(official.info["frame_times_s"], float)}
    offsets = times["official"] - times["clean"]
    psnr = pixel_psnr(video_path)
    rows = [
        ("log-mel mean |official - clean|", float(np.abs(mel["official"] - mel["clean"]).mean()), "natural log"),
        ("log-mel std (clean)", float(mel["clean"].std()), "natural log"),
        ("mean-centred patch cosine", float(_patch_cosine(mel["official"], mel["clean"]).mean()), "cosine"),
        ("frame time offset, k >= 2 (mean)", float(offsets[2:].mean()) if len(offsets) > 2 else float("nan"), "s"),
        ("frame time offset, k = 1", float(offsets[1]) if len(offsets) > 1 else float("nan"), "s"),
        ("pixel PSNR, same frame (mean)", float(psnr.mean()), "dB"),
    ]
    table = pd.DataFrame(rows, columns=["measure", "value", "unit"])
    return {"table": table, "log_mel": mel, "frame_times": times,
            "audio": {"clean": clean.audio, "official": official.audio}}


def plot_route_comparison(comparison: dict, second: int = 1):
    """Both routes' log-mel patch of `second`, their difference, and the frame times: a matplotlib Figure."""
    from matplotlib.figure import Figure  # no pyplot: the notebook shows the returned figure once

    mel = comparison["log_mel"]
    fig = Figure(figsize=(15, 3.4))
    axes = fig.subplots(1, 4)
    for ax, name in zip(axes[:2], ("clean", "official")):
        im = ax.imshow(mel[name][second].T, origin="lower", aspect="auto", cmap="magma")
        ax.set(title=f"{name}: log-mel, second {second}", xlabel="frame (10 ms)", ylabel="mel band")
        fig.colorbar(im, ax=ax)
    diff = mel["official"][second] - mel["clean"][second]
    bound = float(np.abs(diff).max()) or 1.0
    im = axes[2].imshow(diff.T, origin="lower", aspect="auto", cmap="coolwarm", vmin=-bound, vmax=bound)
    axes[2].set(title="official - clean (natural log)", xlabel="frame (10 ms)", ylabel="mel band")
    fig.colorbar(im, ax=axes[2])
    times = comparison["frame_times"]
    k = np.arange(len(times["clean"]))
    axes[3].plot(k, times["clean"] - k, "o-", label="clean (frame on screen at k)")
    axes[3].plot(k, times["official"] - k, "s-", label="official (ffmpeg -r 1)")
    axes[3].set(title="frame time - k", xlabel="segment k", ylabel="s")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    return fig
