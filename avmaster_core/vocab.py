"""The answer vocabulary of MUSIC-AVQA and the question-text protocol.

The 42 answers are the official order: first appearance of `anser` in MUSIC-AVQA's
`avqa-train.json` (the order of QA-TIGER's `answer2idx.json`). Index = position in ANSWERS.
"ten" never occurs in val/test; the test split uses 41 of the 42 answers.
"""
from __future__ import annotations

ANSWERS: tuple[str, ...] = (
    "two", "cello", "congas", "zero", "no", "pipa", "six", "yes", "one", "four",
    "three", "seven", "five", "ukulele", "right", "piano", "left", "accordion", "clarinet", "guzheng",
    "more than ten", "nine", "indoor", "saxophone", "drum", "violin", "middle", "outdoor", "bagpipe", "bassoon",
    "acoustic_guitar", "banjo", "electric_bass", "ten", "eight", "flute", "simultaneously", "trumpet", "erhu", "xylophone",
    "tuba", "suona",
)
ANSWER_TO_INDEX: dict[str, int] = {a: i for i, a in enumerate(ANSWERS)}
NUM_ANSWERS = len(ANSWERS)  # 42

# The 22 instrument classes of MUSIC-AVQA (a subset of ANSWERS).
INSTRUMENTS: tuple[str, ...] = (
    "cello", "congas", "pipa", "ukulele", "piano", "accordion", "clarinet", "guzheng", "saxophone", "drum",
    "violin", "bagpipe", "bassoon", "acoustic_guitar", "banjo", "electric_bass", "flute", "trumpet", "erhu",
    "xylophone", "tuba", "suona",
)


class UnknownAnswerError(KeyError):
    """An answer string that is not one of the 42 official answers."""


def answer_index(answer: str, where: str = "") -> int:
    """Index of `answer` in ANSWERS; a clear error naming the record (`where`) otherwise."""
    try:
        return ANSWER_TO_INDEX[answer]
    except KeyError:
        raise UnknownAnswerError(
            f"unknown answer {answer!r}{' in ' + where if where else ''}: it is not one of the "
            f"{NUM_ANSWERS} official MUSIC-AVQA answers (avmaster_core.vocab.ANSWERS). "
            "Fix the annotation or map it to an official answer."
        ) from None
