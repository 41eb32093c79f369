"""What a value given by a user may be, declared once and checked the same way wherever it comes in.

    LR = Range(float, low=0, open_low=True)          # a finite number > 0
    p.add_argument("--steps", type=Range(int, low=1))  # argparse refuses "--steps 0" while parsing
    parse_text("use_tdpp", "false", bool)             # False; "maybe" is refused

Three kinds of input share it:
- command-line options: a `Range` is an argparse `type`, so a value out of range is refused while the command
  line is parsed, before any data is read: "argument --lr: 'inf' is not allowed: give a finite number > 0"
  (argparse's usage error, exit 2, like an unknown choice). `UniqueValues` refuses repeated list entries
  (`--seeds 1 1`).
- config dataclasses: run_config's fields declare their range in their metadata ("range"), ModelConfig's in
  config._RANGES; `check_ranges` runs in their __post_init__, so Python callers get the same rule.
- `--set FIELD=VALUE` and notebook parameters: `parse_text` reads text by the field's declared type (booleans
  true/false/1/0 in any case, choices, ranges) instead of guessing, so "False" can no longer become a string
  that counts as true.
Numbers are finite unless a Range says otherwise (`finite=False`): inf and NaN are never a sensible setting.
"""
from __future__ import annotations

import argparse
import math
import typing
from dataclasses import dataclass
from typing import Any

TRUE_TEXTS, FALSE_TEXTS = ("true", "1"), ("false", "0")
NONE_TEXTS = ("none", "null")


@dataclass(frozen=True)
class Range:
    """The numbers a setting allows: `kind` int or float, bounds `low`/`high` (None: unbounded), each closed
    unless `open_low`/`open_high`. Calling it parses option text (an argparse `type`)."""

    kind: type = float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    finite: bool = True

    def allowed(self) -> str:
        """'a whole number >= 1', 'a finite number > 0', 'a number in [0, 1)', ..."""
        what = "a whole number" if self.kind is int else "a finite number" if self.finite else "a number"
        if self.low is not None and self.high is not None:
            return (f"{what} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.open_high else ']'}")
        if self.low is not None:
            return f"{what} {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"{what} {'<' if self.open_high else '<='} {self.high:g}"
        return what

    def problem(self, value) -> str | None:
        """Why `value` is not allowed (None: it is)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (self.kind is int and not isinstance(value, int)):
            return f"give {self.allowed()}"
        if self.finite and not math.isfinite(value):
            return f"give {self.allowed()}"
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return f"give {self.allowed()}"
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return f"give {self.allowed()}"
        return None

    def parse(self, text: str):
        """The number `text` spells (ValueError saying what is allowed otherwise)."""
        try:
            value = self.kind(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not allowed: give {self.allowed()}") from None
        problem = self.problem(value)
        if problem:
            raise ValueError(f"{text!r} is not allowed: {problem}")
        return value

    def __call__(self, text: str):  # argparse `type=`: it reports "argument --x: <message>"
        try:
            return self.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    @property
    def __name__(self) -> str:  # argparse names a type in some messages
        return self.kind.__name__


# The ranges the package uses most (one name each, so that equal rules read equal)
AT_LEAST_1 = Range(int, low=1)
AT_LEAST_0 = Range(int, low=0)
POSITIVE = Range(float, low=0, open_low=True)
NON_NEGATIVE = Range(float, low=0)
FRACTION = Range(float, low=0, high=1)


class UniqueValues(argparse.Action):
    """argparse action for `nargs` options whose entries must differ (`--seeds 1 1` is refused)."""

    def __call__(self, parser, namespace, values, option_string=None):
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            parser.error(f"argument {option_string}: {', '.join(map(str, repeated))} given more than once; "
                         "give distinct values")
        setattr(namespace, self.dest, list(values))


def check_value(name: str, value, rng: Range | None = None, choices=None) -> None:
    """ValueError "NAME = VALUE: give ..." where `value` breaks `rng` or is not one of `choices`."""
    if choices is not None and value not in choices:
        raise ValueError(f"{name} = {value!r}: choose one of {', '.join(map(repr, choices))}")
    problem = rng.problem(value) if rng is not None else None
    if problem:
        raise ValueError(f"{name} = {value!r}: {problem}")


def check_ranges(obj, ranges: dict[str, Range]) -> None:
    """Check every field of the dataclass instance `obj` that `ranges` names (None values are "not set")."""
    for name, rng in ranges.items():
        value = getattr(obj, name)
        if value is not None:
            check_value(f"{type(obj).__name__}.{name}", value, rng)


def field_ranges(cls) -> dict[str, Range]:
    """{field: Range} of the fields of dataclass `cls` that declare one in their metadata ("range")."""
    import dataclasses

    return {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if "range" in f.metadata}


def value_type(cls, name: str) -> tuple[Any, bool]:
    """(the type of field `name` of `cls` without None, whether None is allowed): `int | None` -> (int, True)."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


def parse_text(name: str, text: str, kind, *, optional: bool = False, choices=None, rng: Range | None = None):
    """The value `text` spells for a setting of type `kind` (bool, int, float, str); ValueError naming
    `name`, the text and what is allowed otherwise. Booleans: true/false/1/0 in any case; None: none/null
    where `optional` (or where None is one of `choices`)."""
    raw = str(text).strip()
    if (optional or (choices is not None and None in choices)) and raw.lower() in NONE_TEXTS:
        value = None
    elif kind is bool:
        if raw.lower() not in TRUE_TEXTS + FALSE_TEXTS:
            raise ValueError(f"{name}={text}: a switch takes true or false (also 1 or 0, any case)")
        value = raw.lower() in TRUE_TEXTS
    elif kind in (int, float):
        try:
            value = (rng or Range(kind)).parse(raw)
        except ValueError as e:
            raise ValueError(f"{name}={text}: {str(e).split(': ', 1)[-1]}") from None
    elif kind is str:
        value = raw
    else:
        raise ValueError(f"{name} ({kind}) cannot be set from text; set it in Python")
    if value is not None:
        try:
            check_value(name, value, rng, choices)
        except ValueError as e:
            raise ValueError(f"{name}={text}: {str(e).split(': ', 1)[-1]}") from None
    return value
