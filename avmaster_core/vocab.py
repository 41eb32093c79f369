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

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly
        return str(self.args[0])


def answer_index(answer: str, where: str = "",
                 remedy: str = "Fix the annotation or map it to an official answer.") -> int:
    """Index of `answer` in ANSWERS; a clear error naming the record (`where`) and what to do otherwise."""
    try:
        return ANSWER_TO_INDEX[answer]
    except KeyError:
        raise UnknownAnswerError(
            f"unknown answer {answer!r}{' in ' + where if where else ''}: it is not one of the "
            f"{NUM_ANSWERS} official MUSIC-AVQA answers (avmaster_core.vocab.ANSWERS). {remedy}"
        ) from None


def parse_templ_values(templ_values, where: str = "") -> list[str]:
    """`templ_values` as a list of strings.

    MUSIC-AVQA stores it as a *string* holding a JSON list ('["ukulele"]'); MUSIC-AVQA-v2.0 sometimes
    as a real JSON list. Both (and None, meaning no values) are accepted.
    """
    import ast
    import json

    if templ_values is None:
        return []
    if isinstance(templ_values, str):
        text = templ_values.strip() or "[]"
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            try:  # the official code uses ast.literal_eval, which also takes single quotes
                values = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"templ_values {templ_values!r}{' in ' + where if where else ''} "
                                 "is not a list literal") from None
    else:
        values = templ_values
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"templ_values {templ_values!r}{' in ' + where if where else ''} is not a list")
    return [str(v) for v in values]


def fill_question(template: str, templ_values, where: str = "") -> str:
    """The question text fed to the text encoder, by the official protocol (docs/released-code.md §10).

    1. rstrip and split the template on single spaces;
    2. drop the last character of the last word (the "?" or full-width "？");
    3. replace each word containing "<" by the next value of `templ_values`, in order;
    4. join with single spaces (no "?" is added back).

    >>> fill_question("Is the <Object> in the video always playing?", '["ukulele"]')
    'Is the ukulele in the video always playing'
    """
    values = parse_templ_values(templ_values, where)
    words = template.rstrip().split(" ")
    words[-1] = words[-1][:-1]
    n_placeholders = sum("<" in w for w in words)
    # Surplus values are ignored, as in the official code; too few values would crash it.
    if n_placeholders > len(values):
        raise ValueError(
            f"question {template!r}{' in ' + where if where else ''} has {n_placeholders} placeholder(s) "
            f"but templ_values holds {len(values)} value(s) ({values}); fix the annotation"
        )
    next_value = iter(values)
    return " ".join(next(next_value) if "<" in w else w for w in words)
