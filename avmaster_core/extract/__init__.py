"""Feature extraction from raw videos (docs/extraction.md): two decoding routes (`official`, as the released
features were made, and `clean`), registered audio and visual encoders (VGGish, open_clip), a resumable
sharded pipeline into the HDF5 store.

    from avmaster_core.extract import ClipEncoder, VGGishEncoder, decode_video, extract_videos, extract_questions
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "decode_video": "video", "DecodedVideo": "video", "VideoDecodeError": "video", "list_videos": "video",
    "ClipEncoder": "encoders", "ClipPreprocess": "encoders", "VGGishEncoder": "encoders",
    "WeightsNotFoundError": "encoders", "vggish_log_mel": "encoders", "AudioEncoder": "encoders",
    "VisualEncoder": "encoders", "AUDIO_ENCODERS": "encoders", "VISUAL_ENCODERS": "encoders",
    "build_audio_encoder": "encoders", "build_visual_encoder": "encoders",
    "ROUTES": "routes", "compare_routes": "routes", "plot_route_comparison": "routes",
    "decode_video_official": "official_route",
    "extract_videos": "pipeline", "extract_questions": "pipeline", "ask": "asking",
    "write_clip": "synthclip",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):  # lazy: importing the package must not pull in torch, av and open_clip
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
