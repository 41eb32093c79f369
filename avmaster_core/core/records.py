"""One record schema for every benchmark (real annotations and the synthetic benchmark alike).

A record table is a pandas DataFrame with (at least) these columns:

| column        | dtype | meaning |
|---------------|-------|---------|
| question_id   | int64 | unique within a dataset; the key of the question's features in the store |
| video_id      | str   | the key of the video's audio/visual features in the store |
| template      | str   | `question_content` as published (placeholders such as `<Object>`) |
| question      | str   | the filled question text (official protocol, vocab/annotations) |
| modality      | str   | "Audio", "Visual" or "Audio-Visual" |
| qtype         | str   | "Counting", "Comparative", "Location", "Existential" or "Temporal" (AVQA: its question_type) |
| answer        | str   | the answer string |
| answer_idx    | int64 | index of `answer` in the answer vocabulary (vocab.ANSWERS for MUSIC-AVQA family) |
| split         | str   | "train", "val", "test" (or a dataset-specific test subset) |
| dataset       | str   | a benchmark of dataset_registry.DATASET_NAMES ("music_avqa", "music_avqa_r", "music_avqa_v2", "avqa", "synthetic") |

Dataset-specific columns may follow (e.g. `subset` = head/tail/headtail or bias/balance, `choices` for AVQA).
"""
from __future__ import annotations

RECORD_COLUMNS: tuple[str, ...] = (
    "question_id", "video_id", "template", "question", "modality", "qtype",
    "answer", "answer_idx", "split", "dataset",
)
MODALITIES: tuple[str, ...] = ("Audio", "Visual", "Audio-Visual")
# The nine MUSIC-AVQA question types in the paper's Table II column order.
QUESTION_TYPES: tuple[tuple[str, str], ...] = (
    ("Audio", "Counting"), ("Audio", "Comparative"),
    ("Visual", "Counting"), ("Visual", "Location"),
    ("Audio-Visual", "Existential"), ("Audio-Visual", "Counting"), ("Audio-Visual", "Location"),
    ("Audio-Visual", "Comparative"), ("Audio-Visual", "Temporal"),
)


def check_records(records, name: str = "records") -> None:
    """Raise a ValueError naming the missing columns if `records` does not follow the schema."""
    missing = [c for c in RECORD_COLUMNS if c not in records.columns]
    if missing:
        raise ValueError(f"{name} lacks the record columns {missing}; see avmaster_core.core.records.RECORD_COLUMNS")
