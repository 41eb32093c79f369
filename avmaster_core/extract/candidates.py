"""Candidate answers' text features (multiple choice, AVQA; docs/avqa.md): store kind "choices", one CLIP
sentence feature per candidate, made with the questions' text path. The model's side is core/choices.py."""
from __future__ import annotations

import pandas as pd

from ..core.store import FeatureStore
from ..core.vocab import question_text
from ..data.annotations import load_annotations
from ..data.dataset_registry import get as dataset_spec


def extract_choices(choices: dict[int, list[str]], store, clip, batch_size: int = 256) -> int:
    """Write store 'choices/<question_id>' [C, D]: CLIP sentence features of each question's candidates, in the
    record's order, with the same text path as the questions. Resumable (skips questions already written)."""
    todo = [q for q in choices if not store.has("choices", q)]
    for start in range(0, len(todo), batch_size):
        part = todo[start:start + batch_size]
        texts = [question_text(c) for q in part for c in choices[q]]
        sentence, _ = clip.encode_text(texts)  # [sum C, D]
        row = 0
        for q in part:
            n = len(choices[q])
            store.put("choices", q, sentence[row:row + n].numpy())
            row += n
    return len(todo)


def extract_dataset_choices(dataset: str, split: str | None, root, out, clip, shard: tuple[int, int] = (0, 1),
                            batch_size: int = 256) -> int:
    """`extract_choices` for every record of `dataset` (all splits, or `split`) that has candidate answers
    (a `choices` column: AVQA, synthetic_mc); 0 for datasets without them. Same sharding as the questions."""
    splits = [split] if split else list(dict.fromkeys(_splits_of(dataset)))
    table = pd.concat([load_annotations(dataset, s, root) for s in splits])
    if "choices" not in table.columns:
        return 0
    table = table.drop_duplicates("question_id")
    items = dict(zip(table["question_id"].astype("int64"), table["choices"]))
    ids = sorted(items)[shard[0]::shard[1]]
    with FeatureStore(out, "a") as store:
        store.expect_widths(text_dim=clip.dim)
        return extract_choices({q: list(items[q]) for q in ids}, store, clip, batch_size)


def _splits_of(dataset: str) -> tuple[str, ...]:
    return dataset_spec(dataset).splits
