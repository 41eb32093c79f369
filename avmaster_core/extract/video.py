"""Decode a video with PyAV into T one-second segments: the frame at each whole second and 16 kHz mono audio.

This is the `clean` extraction route. It is NOT how the released MUSIC-AVQA features were made (frames by
ffmpeg `-r 1` through JPEG, audio by moviepy's sample-picking resampler); that is the `official` route,
emulated in `official_route.py`. docs/extraction.md compares the two.

Policy (the paper's features: 60 frames at 1 fps and 60 one-second VGGish chunks per MUSIC-AVQA video):
- Time axis: t = 0 is the first decoded video frame's presentation time; segment k covers [k, k+1) s.
- Frame at second k: the frame on screen at time k, i.e. the last frame whose presentation time is
  <= k (+1 ms to absorb timestamp rounding). Timestamps come from the decoder, so variable frame
  rate is handled; a frame without a timestamp gets index / average frame rate.
- Audio: every channel resampled by libswresample (PyAV AudioResampler, anti-aliased) to 16 kHz signed
  16-bit, divided by 32768 and averaged over channels (the same scaling VGGish applies to a 16-bit wav).
  It is aligned to the video's t = 0 using the two streams' timestamps. Segment k is samples
  [16000 k, 16000 (k+1)).
- Length: `seconds=T` keeps the first T seconds of a longer video; a shorter video has its missing
  seconds filled by repeating the last frame and with silence, and the count is reported
  (`padded_seconds`). `seconds=None` uses the video's own length, ceil(duration) segments.
- Rotation: a display-matrix rotation (phone videos) is applied, so frames are upright as a player shows them.
- Odd sizes and pixel formats are converted to RGB by libswscale; CLIP preprocessing resizes afterwards.
- No audio stream: silence, and `audio_missing=True` in the info (the caller records a warning).
- A file that cannot be opened or has no decodable video frame raises `VideoDecodeError` with the reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SAMPLE_RATE = 16000
TIME_TOLERANCE_S = 1e-3
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


class VideoDecodeError(RuntimeError):
    """The file cannot be decoded into frames (corrupt, truncated, not a video)."""


@dataclass
class DecodedVideo:
    frames: list  # T items: whatever `frame_transform` returns (default: RGB uint8 [H, W, 3] arrays)
    audio: np.ndarray  # [T, 16000] float32 in [-1, 1]
    info: dict = field(default_factory=dict)  # duration, fps, rotation, padded_seconds, audio_missing, ...

    @property
    def seconds(self) -> int:
        return len(self.frames)


def upright(image, rotation: int):
    """Apply a display rotation (degrees counter-clockwise, as PyAV's VideoFrame.rotation) to a PIL image."""
    from PIL import Image

    quarter_turns = round(rotation / 90) % 4
    return image if quarter_turns == 0 else image.transpose(
        {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}[quarter_turns]
    )


def _frame_time(frame, index: int, rate) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return index / float(rate or 25)


def _decode_frames(container, stream, seconds: int | None, frame_transform: Callable) -> tuple[list, dict]:
    """The frame on screen at each whole second (see the module policy)."""
    stream.thread_type = "AUTO"  # frame-parallel decoding; the order of output frames is unchanged
    rate = stream.average_rate or stream.guessed_rate
    chosen: list = []  # transformed frames for t = 0, 1, ...
    previous = None  # (time, av frame) of the last frame at or before the next target
    start = None
    last_time = 0.0
    n_decoded = 0
    rotation = 0

    def take(av_frame):
        image = upright(av_frame.to_image(), rotation)  # to_image: RGB24 via libswscale
        return frame_transform(image)

    cached = None  # the last transformed frame, reused when one frame covers several seconds
    for index, frame in enumerate(container.decode(stream)):
        n_decoded += 1
        time = _frame_time(frame, index, rate)
        if start is None:
            start, rotation = time, int(frame.rotation or 0)
        time -= start
        last_time = max(last_time, time)
        while previous is not None and time > len(chosen) + TIME_TOLERANCE_S:
            if cached is None or cached[0] is not previous[1]:
                cached = (previous[1], take(previous[1]))
            chosen.append(cached[1])
            if seconds is not None and len(chosen) >= seconds:
                break
        if seconds is not None and len(chosen) >= seconds:
            break
        previous = (time, frame)
    if previous is None:
        raise VideoDecodeError("no decodable video frame")
    frame_duration = 1.0 / float(rate) if rate else 0.0
    duration = last_time + frame_duration
    target = seconds if seconds is not None else max(1, math.ceil(duration - TIME_TOLERANCE_S))
    padded = 0
    while len(chosen) < target:  # the remaining seconds show the last decoded frame
        if len(chosen) >= duration - TIME_TOLERANCE_S:
            padded += 1
        if cached is None or cached[0] is not previous[1]:
            cached = (previous[1], take(previous[1]))
        chosen.append(cached[1])
    info = {"frames_decoded": n_decoded, "fps": float(rate) if rate else 0.0, "rotation": rotation,
            "video_duration_s": round(duration, 3), "padded_seconds": padded, "video_start_s": start}
    return chosen, info


def _decode_audio(container, stream, seconds: int, video_start: float,
                  sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    import av

    resampler = av.AudioResampler(format="s16p", layout=None, rate=sample_rate)  # keep channels; mean below
    chunks: list[np.ndarray] = []
    first_time = None
    wanted = seconds * sample_rate

    def add(frames):
        for out in frames:
            chunks.append(out.to_ndarray().astype(np.float32).mean(axis=0) / 32768.0)  # [C,N] -> [N]

    total = 0
    for frame in container.decode(stream):
        if first_time is None and frame.pts is not None and frame.time_base is not None:
            first_time = float(frame.pts * frame.time_base)
        add(resampler.resample(frame))
        total = sum(len(c) for c in chunks)
        # enough: `wanted` after the part the alignment below cuts (audio ahead of the video), plus a 2 s margin
        ahead = 0.0 if first_time is None else max(0.0, video_start - first_time)
        if total > wanted + (ahead + 2) * sample_rate:
            break
    add(resampler.resample(None))  # flush
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    # align: audio sample 0 sits at first_time on the container timeline; video t = 0 at video_start
    shift = round(((first_time if first_time is not None else video_start) - video_start) * sample_rate)
    samples = np.concatenate([np.zeros(shift, np.float32), samples]) if shift > 0 else samples[-shift:]
    audio_duration = len(samples) / sample_rate
    out = np.zeros(wanted, np.float32)
    n = min(wanted, len(samples))
    out[:n] = samples[:n]
    info = {"audio_duration_s": round(audio_duration, 3), "audio_channels": stream.codec_context.channels,
            "audio_rate_in": stream.rate, "audio_silent": bool(n == 0 or np.abs(out[:n]).max() < 1e-4)}
    return out.reshape(seconds, sample_rate), info


def decode_video(path: str | Path, seconds: int | None = 60,
                 frame_transform: Callable | None = None, sample_rate: int = SAMPLE_RATE) -> DecodedVideo:
    """Decode `path` into `seconds` one-second segments (None: the video's own length), the audio at
    `sample_rate` (the audio encoder's: 16 kHz for VGGish).

    frame_transform: applied to each chosen frame (a PIL RGB image); default returns an RGB uint8 [H,W,3] array.
    Raises VideoDecodeError with the reason when the file cannot be used.
    """
    import av

    if seconds is not None and seconds < 1:
        raise ValueError(f"seconds must be >= 1 or None, got {seconds}")
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"file not found: {path}")
    transform = frame_transform or (lambda image: np.asarray(image, dtype=np.uint8))
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            frames, info = _decode_frames(container, container.streams.video[0], seconds, transform)
        with av.open(str(path)) as container:  # reopen: demuxing the audio from the start is simplest
            if container.streams.audio:
                audio, audio_info = _decode_audio(container, container.streams.audio[0], len(frames),
                                                  info["video_start_s"], sample_rate)
                info.update(audio_info, audio_missing=False)
            else:
                audio = np.zeros((len(frames), sample_rate), np.float32)
                info.update(audio_missing=True, audio_silent=True, audio_duration_s=0.0)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
        raise VideoDecodeError(f"{type(e).__name__}: {e}") from e
    info["seconds"] = len(frames)
    return DecodedVideo(frames=frames, audio=audio, info=info)


def check_video(path: str | Path) -> None:
    """VideoDecodeError naming `path` unless it is a file whose container opens and holds a video stream
    (reads the header only: a check before any encoder loads)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"video {path} {'is a folder' if path.is_dir() else 'does not exist'}: give a video "
                               f"file ({', '.join(VIDEO_EXTENSIONS)})")
    size = path.stat().st_size
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path} holds no video stream (an audio-only file?): give a video file")
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoDecodeError(f"{path} ({size} bytes) cannot be opened as a video ({type(e).__name__}: "
                               f"{getattr(e, 'strerror', None) or e}); it is empty, truncated or not a video: "
                               "give another file or download it again") from None


def list_videos(folder: str | Path) -> dict[str, Path]:
    """video_id (the file name without extension) -> path, for every video file under `folder` (recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"video folder {folder} does not exist")
    videos: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            if path.stem in videos:
                raise ValueError(f"two videos share the id {path.stem!r}: {videos[path.stem]} and {path}; "
                                 "rename one (the id is the file name without extension)")
            videos[path.stem] = path
    if not videos:
        raise FileNotFoundError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {folder}")
    return videos
