"""The `official` extraction route: each step of the scripts that made the released MUSIC-AVQA features,
emulated in-process with PyAV, numpy and Pillow (no ffmpeg or moviepy binaries needed).

The released features were made by two command lines per video (docs/extraction.md has the evidence):
frames by `ffmpeg -i VIDEO -r 1 %06d.jpg`, audio by moviepy 1.0.1 `VideoFileClip(VIDEO).audio
.write_audiofile(WAV, fps=16000)`. Step by step, as emulated here:

Audio
1. ffmpeg decodes the audio to 44.1 kHz stereo signed 16-bit (libswresample; `decode_s16_stereo_44k`),
   from the first audio sample: nothing aligns it to the first video frame.
2. moviepy picks samples with no anti-alias filter, clips to +-0.99 and truncates to int16
   (`moviepy_resample`, the index rule in `moviepy_sample_indices`, drift included).
3. VGGish reads the wav as int16 / 32768 and averages the two channels.

Frames
4. ffmpeg's constant-frame-rate rule for `-r 1` (`ffmpeg_r1_picks`): which decoded frame becomes JPEG k.
5. ffmpeg converts the frame to full-range YUV (yuvj420p for 4:2:0 video; libswscale) and encodes it with
   libavcodec's `mjpeg` encoder at its defaults: time base 1/1 (`-r 1`), rate control at 200 kb/s, i.e. the
   MPEG-1 intra matrix scaled per frame (one table for luma and chroma; qscale moves from frame to frame
   within a video, so every written frame, a repeated one included, goes through one encoder in order:
   `FfmpegJpegWriter`). Pillow decodes the JPEG (JFIF, BT.601 full range) before CLIP, as the released scripts
   read the frames.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from .video import SAMPLE_RATE, DecodedVideo, VideoDecodeError, upright

FFMPEG_RATE = 44100  # moviepy's AudioFileClip asks ffmpeg for 44.1 kHz stereo s16
MOVIEPY_BUFFER = 200000  # AudioFileClip's reader buffer (input samples)
MOVIEPY_CHUNK = 2000  # write_audiofile's buffersize (output samples per chunk)
MOVIEPY_CLIP = 0.99  # to_soundarray(quantize=True) clips to +-0.99 before scaling by 2**15
CFR_DROP, CFR_DUPLICATE = -1.1, 1.1  # ffmpeg's vsync=cfr thresholds (in output frames)
# A frame exactly at a threshold (t = k - 1.1 - 1/fps happens at 30 and 50 fps) is written, as measured:
# ffmpeg's timestamps carry extra precision there, so compare with a small tolerance instead of raw floats.
THRESHOLD_EPS = 1e-6
# ffmpeg's default MJPEG output: libavcodec's mjpeg encoder with its defaults (rate control at AVCodecContext's
# default 200 kb/s, time base 1/1 from `-r 1`), fed full-range YUV. Until issue 23 this step was a Pillow
# quality-75 round trip (Annex K tables): an approximation, 2.7-10.5 % off the real JPEGs' CLIP input.
JPEG_BIT_RATE = 200_000
# the pixel format ffmpeg negotiates for the mjpeg encoder from the decoder's (full range: the "j" formats)
FULL_RANGE = {"yuv420p": "yuvj420p", "yuv422p": "yuvj422p", "yuv444p": "yuvj444p",
              "yuvj420p": "yuvj420p", "yuvj422p": "yuvj422p", "yuvj444p": "yuvj444p"}
PARAMS = {"audio": "ffmpeg s16 stereo 44.1 kHz from the first audio sample; moviepy 1.0.1 sample picking "
                   "round(44100 n / 16000) with its buffer drift, clip +-0.99, int16 truncation; channel mean / 32768",
          "frames": "ffmpeg -r 1 (vsync cfr, thresholds -1.1/+1.1, input frame duration 1/fps) from the file's start time",
          "pixels": f"full-range YUV (yuvj420p for 4:2:0, libswscale), libavcodec mjpeg at its defaults (time base "
                    f"1/1, rate control {JPEG_BIT_RATE // 1000} kb/s), decoded by Pillow (JFIF BT.601)"}


# -- audio -----------------------------------------------------------------------------------------------------
def ffmpeg_duration(container) -> float:
    """The duration moviepy reads from ffmpeg's banner ('Duration: 00:01:00.02'): rounded to 10 ms."""
    if container.duration is None:
        return 0.0
    return ((int(container.duration) + 5000) // 10000) / 100.0


def moviepy_sample_indices(n_input: int, duration: float, n_output: int | None = None,
                           rate_in: int = FFMPEG_RATE, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """The input sample that moviepy 1.0.1 `write_audiofile(fps=16000)` writes as output sample n.

    The formula (derived from the reader and writer of moviepy 1.0.1; docs/extraction.md):
      N = int(16000 D) output samples, D = ffmpeg's reported duration; they are written in chunks
      c = 0..N//2000, chunk c holding n in [p_c, p_(c+1)) with p = linspace(0, N, N//2000 + 2) as int.
      Ideal index   i(n) = round(44100 * ((1/16000) * n))   (float64, round half to even, as np.round).
      Drift         the reader keeps a 200,000-sample buffer; when a chunk's largest i reaches past it the
                    buffer is re-centred on that i (new start s = i_max - 100,000) but keeps one old sample too
                    many, so every later sample comes from one position earlier. Starting from s_0 = 0, the
                    j-th refill happens in the first chunk with max i >= s_(j-1) + 200,000, and every sample of
                    that chunk and after reads index i(n) - j. One refill every 100,000 input samples: one
                    sample (22.7 us) every 2.27 s after the first refill at 4.54 s; -0.52 ms by 55 s.
      Times t = n / 16000 >= D give silence (index -1 here). Near the end of the file the reader's
      short-buffer correction (a buffer shorter than 100,000 samples shifts every slot back by
      100,001 - its length) and its "repeat the last sample" fallback are followed as well. Where that shift
      would leave the buffer (audio shorter than ~2.3 s) moviepy 1.0.1 itself raises IndexError; we then read
      the sample it meant, without the shift.
    """
    total = int(rate_out * duration)
    n_output = total if n_output is None else n_output
    picks = np.full(n_output, -1, np.int64)
    buffer = np.arange(0, min(MOVIEPY_BUFFER, n_input))  # input index held at each buffer slot
    buffer_start, read_pos = 0, len(buffer)
    chunks = total // MOVIEPY_CHUNK + 1
    bounds = np.linspace(0, total, chunks + 1, endpoint=True, dtype=int)
    for c in range(chunks):
        lo, hi = int(bounds[c]), int(bounds[c + 1])
        if lo >= n_output:
            break
        tt = (1.0 / rate_out) * np.arange(lo, hi)
        in_time = (tt >= 0) & (tt < duration)
        if not in_time.any():
            continue
        frames = np.round(rate_in * tt).astype(np.int64)[in_time]
        for target in (frames.min(), frames.max()):  # the reader re-centres on the first that is outside
            if not 0 <= target - buffer_start < len(buffer):
                buffer, buffer_start, read_pos = _recentre(buffer, buffer_start, read_pos, int(target), n_input)
                break
        slots = frames - buffer_start
        if len(buffer) < MOVIEPY_BUFFER // 2:
            shifted = slots - (MOVIEPY_BUFFER // 2 - len(buffer) + 1)
            slots = shifted if shifted.min() >= -len(buffer) else slots  # negative slots wrap, as numpy does
        slots = np.minimum(slots, len(buffer) - 1)  # the reader's IndexError fallback: repeat the last sample
        chosen = np.full(hi - lo, -1, np.int64)
        chosen[in_time] = buffer[slots] if len(buffer) else -1
        end = min(hi, n_output)
        picks[lo:end] = chosen[:end - lo]
    return picks


def _recentre(buffer, buffer_start, read_pos, target, n_input):
    """moviepy 1.0.1's buffer_around(target), on input indices instead of samples."""
    new_start = max(0, target - MOVIEPY_BUFFER // 2)
    current_end = buffer_start + MOVIEPY_BUFFER
    if new_start < current_end < new_start + MOVIEPY_BUFFER:
        conserved = current_end - new_start + 1  # the off-by-one that makes the drift
        fresh = np.arange(read_pos, min(read_pos + MOVIEPY_BUFFER - conserved, n_input))
        read_pos += MOVIEPY_BUFFER - conserved
        buffer = np.concatenate([buffer[-conserved:], fresh])
    else:  # a seek
        buffer = np.arange(new_start, min(new_start + MOVIEPY_BUFFER, n_input))
        read_pos = new_start + MOVIEPY_BUFFER
    return buffer, new_start, read_pos


def moviepy_resample(samples: np.ndarray, duration: float, n_output: int | None = None,
                     rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """int16 [N, C] at 44.1 kHz -> the int16 [n_output, C] wav moviepy writes at `rate_out` (silence past the end)."""
    picks = moviepy_sample_indices(len(samples), duration, n_output, rate_out=rate_out)
    out = np.zeros((len(picks), samples.shape[1]), np.float64)
    valid = picks >= 0
    out[valid] = samples[picks[valid]].astype(np.float64) / 32768.0  # the reader's int16 -> float
    out = np.clip(out, -MOVIEPY_CLIP, MOVIEPY_CLIP)
    return (32768.0 * out).astype(np.int16)  # astype truncates toward zero


def decode_s16_stereo_44k(container, stream) -> np.ndarray:
    """The whole audio stream as ffmpeg hands it to moviepy: int16 [N, 2] at 44.1 kHz, from the first sample."""
    import av

    resampler = av.AudioResampler(format="s16", layout="stereo", rate=FFMPEG_RATE)
    chunks = []
    for frame in container.decode(stream):
        chunks.extend(out.to_ndarray().reshape(-1, 2) for out in resampler.resample(frame))  # packed [1, 2N]
    chunks.extend(out.to_ndarray().reshape(-1, 2) for out in resampler.resample(None))
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.int16)


# -- frames ----------------------------------------------------------------------------------------------------
class CfrSampler:
    """ffmpeg's vsync=cfr decision for `-r 1`, one input frame at a time.

    For an input frame at time t (s from the file's start time) with input frame duration d = 1/fps, and
    k = the number of JPEGs written so far: delta0 = t - k, delta = delta0 + d; the frame is dropped if
    delta < -1.1, written once if delta <= 1.1, and written round(delta) times otherwise, the first
    round(delta0 - 0.6) of them (when delta0 > 1.1) being the previous frame again (a gap is filled).
    `push(t)` returns (copies of the previous frame, copies of this one).
    """

    def __init__(self, fps: float):
        self.duration = min(1.0, 1.0 / fps) if fps else 1.0
        self.written = 0

    def push(self, t: float) -> tuple[int, int]:
        delta0 = t - self.written
        delta = delta0 + self.duration
        previous, copies = 0, 1
        if delta < CFR_DROP - THRESHOLD_EPS:
            copies = 0
        elif delta > CFR_DUPLICATE + THRESHOLD_EPS:
            copies = int(np.rint(delta))
            previous = int(np.rint(delta0 - 0.6)) if delta0 > CFR_DUPLICATE else 0
            previous = min(previous, copies)
            copies -= previous
        self.written += previous + copies
        return previous, copies


def ffmpeg_r1_picks(times, fps: float) -> list[int]:
    """Index (into `times`) of the frame written as JPEG k = 0, 1, ... by `ffmpeg -r 1`.

    On a constant-rate input this is: JPEG 0 = frame 0, JPEG 1 = frame 1, JPEG k >= 2 = the first frame with
    t >= k - 1.1 - 1/fps (about k - 1.12 s).
    """
    sampler, picks = CfrSampler(fps), []
    for index, t in enumerate(times):
        previous, copies = sampler.push(float(t))
        picks += [max(index - 1, 0)] * previous + [index] * copies
    return picks


def bt601_rgb(frame) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a PyAV video frame with BT.601 coefficients (what ffmpeg's JPEG path uses)."""
    return frame.reformat(format="rgb24", src_colorspace="ITU601", dst_colorspace="ITU601").to_ndarray()


class FfmpegJpegWriter:
    """The JPEG step of `ffmpeg -i VIDEO -r 1 %06d.jpg` for one video: every written frame, in order, through one
    libavcodec `mjpeg` encoder with ffmpeg's defaults (its rate control carries over from frame to frame)."""

    def __init__(self, bit_rate: int = JPEG_BIT_RATE):
        self.bit_rate, self.codec, self.written = bit_rate, None, 0

    def encode(self, frame) -> bytes:
        """One decoded PyAV frame -> the bytes of the JPEG ffmpeg writes for it."""
        from fractions import Fraction

        import av

        pix_fmt = FULL_RANGE.get(frame.format.name, "yuvj420p")
        if self.codec is None:
            self.codec = av.CodecContext.create("mjpeg", "w")
            self.codec.width, self.codec.height, self.codec.pix_fmt = frame.width, frame.height, pix_fmt
            self.codec.time_base = self.codec.framerate = Fraction(1, 1)
            self.codec.bit_rate = self.bit_rate
        yuv = frame.reformat(format=pix_fmt, interpolation="BICUBIC")  # ffmpeg's default sws flags
        yuv.pts, yuv.time_base = self.written, Fraction(1, 1)
        self.written += 1
        packets = self.codec.encode(yuv)
        if len(packets) != 1:  # an intra-only encoder without delay: one packet per frame
            raise VideoDecodeError(f"the mjpeg encoder returned {len(packets)} packets for one frame")
        return bytes(packets[0])


def decode_jpeg(data: bytes):
    """A JPEG's pixels as the released scripts read them: Pillow, RGB."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def jpeg_round_trip(rgb: np.ndarray, quality: int = 75):
    """Encode an RGB uint8 array as a baseline JPEG (Pillow, Annex K tables at `quality`, 4:2:0) and decode it.
    The official route's approximation before issue 23 (FfmpegJpegWriter replaces it); kept for comparisons."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    return decode_jpeg(buffer.getvalue())


def _decode_frames(container, stream, seconds: int | None, transform: Callable, origin: float):
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate
    sampler = CfrSampler(float(rate) if rate else 0.0)
    chosen, times, rotation = [], [], 0
    last = None  # (time, av frame): ffmpeg may write the previous frame again
    writer = FfmpegJpegWriter()

    def take(frame):  # every written frame is encoded (a repeat too: the rate control has moved on)
        return transform(upright(decode_jpeg(writer.encode(frame)), rotation))

    for index, frame in enumerate(container.decode(stream)):
        t = float(frame.pts * frame.time_base) if frame.pts is not None else index / float(rate or 25)
        if index == 0:
            rotation = int(frame.rotation or 0)
        t -= origin
        copies_previous, copies = sampler.push(t)
        if copies_previous and last is not None:
            chosen += [take(last[1]) for _ in range(copies_previous)]
            times += [last[0]] * copies_previous
        chosen += [take(frame) for _ in range(copies)]
        times += [t] * copies
        last = (t, frame)
        if seconds is not None and len(chosen) >= seconds:
            break
    if not chosen:
        raise VideoDecodeError("no decodable video frame")
    return chosen, times, float(rate) if rate else 0.0, rotation


def decode_video_official(path: str | Path, seconds: int | None = 60,
                          frame_transform: Callable | None = None, sample_rate: int = SAMPLE_RATE) -> DecodedVideo:
    """Decode `path` as the released features' scripts did (see the module docstring); same output as decode_video.

    Frames: JPEG k of `ffmpeg -r 1` for k < seconds (the last one repeated if there are fewer); audio: the
    moviepy wav at `sample_rate` (`write_audiofile(fps=...)`: 16 kHz for VGGish) from the first audio sample, cut
    or padded with silence to `seconds` s.
    info["frame_times_s"] holds each frame's time from the file's start time.
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
            origin = container.start_time / 1e6 if container.start_time is not None else 0.0  # ffmpeg's ts_offset
            duration = ffmpeg_duration(container)
            frames, times, fps, rotation = _decode_frames(container, container.streams.video[0], seconds,
                                                          transform, origin)
        target = seconds if seconds is not None else max(1, math.ceil(duration - 1e-3))
        padded = max(0, target - len(frames))
        frames, times = (frames + [frames[-1]] * padded)[:target], (times + [times[-1]] * padded)[:target]
        info = {"route": "official", "fps": fps, "rotation": rotation, "padded_seconds": padded,
                "video_duration_s": duration, "frame_times_s": [round(t, 4) for t in times]}
        with av.open(str(path)) as container:
            if container.streams.audio:
                samples = decode_s16_stereo_44k(container, container.streams.audio[0])
                wav = moviepy_resample(samples, duration, target * sample_rate, rate_out=sample_rate)
                audio = (wav.astype(np.float32).mean(axis=1) / 32768.0).reshape(target, sample_rate)
                info.update(audio_missing=False, audio_duration_s=round(len(samples) / FFMPEG_RATE, 3),
                            audio_silent=bool(np.abs(audio).max() < 1e-4))
            else:
                audio = np.zeros((target, sample_rate), np.float32)
                info.update(audio_missing=True, audio_silent=True, audio_duration_s=0.0)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:
        raise VideoDecodeError(f"{type(e).__name__}: {e}") from e
    info["seconds"] = target
    return DecodedVideo(frames=frames, audio=audio, info=info)
