"""The bundled synthetic benchmark: MUSIC-AVQA-like scenes, features and questions, generated on CPU.

    paths = generate_synthetic("data/synthetic")      # or: avmaster synth --out data/synthetic
    records = avmaster_core.load_annotations("synthetic", "train", "data/synthetic")

What a scene is. T one-second segments; 1-4 instruments of MUSIC-AVQA's 22 classes (a class may occur
twice); each instrument is visible at a distinct position (left / middle / right) or off-screen; it
sounds in one interval of seconds (or never: a silent visible instrument; off-screen ones always sound)
with a loudness and a rhythmicity; the place is indoor or outdoor; a voiceover may speak for a while.

How features carry it. A fixed "world" (seeded once, shared by every dataset seed, like a frozen
encoder) gives orthogonal codes: per class an appearance, per (class, position) a binding code,
per position a layout code, per place a scene code (visual, 768-d); per class a
timbre and a rhythm direction, a voice and an ambience (audio, 128-d). Per second:
    visual[t] = place + video nuisance + sum_visible(appearance[c] + bind[c,p] + layout[p]
                                                     ) + noise
    audio[t]  = ambience + sum_sounding(loudness * (timbre[c] + rhythm * beat[c])) + voice_t + noise
Audio has no position and hears off-screen instruments; visual shows no sound at all (no playing
cue). So audio questions need audio, visual questions need visual, and AV questions need both (e.g.
"where is the loudest instrument": loudness from audio, position from visual). Questions that depend on
which instrument sounds are asked only when that is identifiable: every class that sounds occurs once.

Question features are laid out like CLIP's (start token, one state per word, the end-token state,
zero padding up to 77, or with padding="context" CLIP-like non-zero padding that carries the sentence); the
sentence feature is the end-token state. Each word has a fixed vector; an
instrument name's vector shares a part with that class's appearance code (CLIP's joint space), and the
sentence state is order-sensitive, so the model must read which instrument/position is asked about.

Questions: 30 templates over MUSIC-AVQA's nine types, in the style of its templates (placeholders
<Object>, <LR>, <LRer>, <FL>, <LL>, <TH>, <BA> filled from `templ_values`), answers from the official
42. For every video the generator lists every (template, filling) that the scene answers unambiguously
and picks questions greedily so that each template's answers stay balanced within each split: a
question-only model cannot beat ~1/#answers per template (measured by `question_only_ceiling`).
Splits are by video (70/10/20), so no test video is seen in training.

Multiple-choice variant (`choices=C`, `avmaster synth --choices 4`): AVQA's task on the same scenes. Every
question also gets C candidate answers (`multi_choice` in its record): the right one and C-1 distractors,
drawn first from its template's own answers (so the candidates do not give the question type away), then from
the other official answers, in a random order (the right one's position is uniform). The store gains
`choices/<question_id>` [C, 768], each candidate's sentence feature made like a question's. The candidates
come from their own random stream, so the scenes, questions and features are those of `choices=0`. Load it as
dataset "synthetic_mc" (`load_annotations("synthetic_mc", ...)`).

Output (all deterministic given the arguments): avqa-{train,val,test}.json in MUSIC-AVQA's format,
features.h5 (a FeatureStore; identical question texts share one HDF5 object via hard links) and
scenes.json (ground truth). An existing output with the same parameters is reused (overwrite=False).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..core.atomic import write_text
from ..core.options import AT_LEAST_0, AT_LEAST_1, FRACTION, NON_NEGATIVE
from ..core.store import TOKENS_ATTR, FeatureStore, WriterLock
from ..core.vocab import ANSWERS, INSTRUMENTS, fill_question

GENERATOR = "avmaster_core.data.synthetic"
VERSION = 2
WORLD_SEED = 2510_18346  # the world (codes, word vectors) is fixed; `seed` only draws scenes and questions
POSITIONS = ("left", "middle", "right")
PLACES = ("indoor", "outdoor")
NUMBERS = ("zero", "one", "two", "three", "four")
YES_NO = ("yes", "no")
SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
VISUAL_DIM, AUDIO_DIM, WORDS_LEN = 768, 128, 77
BALANCE_SLACK = 2     # per split, no answer of a template is asked more than 2 times ahead of its rarest
MARGIN = 0.25         # loudness / rhythm differences smaller than this are never asked about
# visible_prob: chance an instrument is on screen; silent_prob: chance a visible one stays silent. Lower
# visible_prob / higher silent_prob decorrelate "visible" from "sounding", so audio questions need audio.
DEFAULTS = dict(num_videos=600, questions_per_video=10, T=10, seed=0, noise=0.5, visible_prob=0.75, silent_prob=0.3,
                choices=0, padding="zero")
# What the word features hold after the end token: "zero" (what every shipped run was trained on) or "context"
# (like CLIP's: its causal attention gives every position after the end token a state that carries the sentence,
# so real padding is neither zero nor the same for every question; see question_features)
PADDINGS = ("zero", "context")


# ----------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------
@dataclass
class Instrument:
    cls: str
    position: str | None   # None = off-screen
    start: int             # sounds in seconds [start, end); start == end: silent
    end: int
    loudness: float
    rhythm: float

    @property
    def visible(self) -> bool:
        return self.position is not None

    @property
    def sounds(self) -> bool:
        return self.end > self.start

    def sounding(self, t: int) -> bool:
        return self.start <= t < self.end


@dataclass
class Scene:
    video_id: str
    T: int
    place: str
    voice: tuple[int, int] | None        # voiceover seconds [start, end) or None
    instruments: list[Instrument] = field(default_factory=list)

    # derived views used by the question templates
    def visible(self) -> list[Instrument]:
        return [i for i in self.instruments if i.visible]

    def sounding(self) -> list[Instrument]:
        return [i for i in self.instruments if i.sounds]

    def of_class(self, cls: str) -> list[Instrument]:
        return [i for i in self.instruments if i.cls == cls]

    def at(self, position: str) -> Instrument | None:
        return next((i for i in self.instruments if i.position == position), None)

    def identifiable(self) -> bool:
        """True when every class that sounds occurs once, so audio tells which instrument sounds."""
        return all(len(self.of_class(i.cls)) == 1 for i in self.sounding())

    def unique(self, cls: str) -> Instrument | None:
        """The one instrument of class `cls`, or None when it is absent or occurs twice."""
        found = self.of_class(cls)
        return found[0] if len(found) == 1 else None


def sample_scene(rng: np.random.Generator, video_id: str, T: int, visible_prob: float = DEFAULTS["visible_prob"],
                 silent_prob: float = DEFAULTS["silent_prob"]) -> Scene:
    place = PLACES[rng.integers(2)]
    voice = None
    if rng.random() < 0.3:
        start = int(rng.integers(T))
        voice = (start, int(rng.integers(start + 1, T + 1)))
    n = int(rng.integers(1, 5))
    classes: list[str] = []
    for _ in range(n):
        if classes and rng.random() < 0.2:
            classes.append(classes[rng.integers(len(classes))])          # a second violin, ...
        else:
            classes.append(INSTRUMENTS[rng.integers(len(INSTRUMENTS))])
    visible = rng.random(n) < visible_prob
    visible[rng.integers(n)] = True                                      # something is on screen
    while visible.sum() > len(POSITIONS):
        visible[rng.choice(np.flatnonzero(visible))] = False
    positions = iter(rng.permutation(POSITIONS).tolist())
    instruments = []
    for cls, vis in zip(classes, visible):
        if vis and rng.random() < silent_prob:
            start = end = 0                                              # visible but silent
        elif rng.random() < 0.35:
            start, end = 0, T                                            # plays throughout
        else:
            start = int(rng.integers(T))
            end = int(rng.integers(start + 1, T + 1))
        instruments.append(Instrument(cls, next(positions) if vis else None, start, end,
                                      round(float(rng.uniform(0.5, 1.5)), 3), round(float(rng.uniform(0, 1)), 3)))
    return Scene(video_id, T, place, voice, instruments)


# ----------------------------------------------------------------------------------------------------
# The world: fixed codes and word vectors
# ----------------------------------------------------------------------------------------------------
def _seed_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{WORLD_SEED}|{name}".encode()).digest()[:8], "little")


@lru_cache(maxsize=1)
def world() -> dict:
    """Orthogonal codes (each of norm sqrt(dim), i.e. unit per-element scale), keyed by name."""
    visual_names = ([f"appearance/{c}" for c in INSTRUMENTS] + [f"layout/{p}" for p in POSITIONS]
                    + [f"place/{p}" for p in PLACES]
                    + [f"bind/{c}/{p}" for c in INSTRUMENTS for p in POSITIONS])
    audio_names = ([f"timbre/{c}" for c in INSTRUMENTS] + [f"beat/{c}" for c in INSTRUMENTS]
                   + ["voice", "ambience/indoor", "ambience/outdoor"])
    codes = {}
    for names, dim, tag in ((visual_names, VISUAL_DIM, "visual"), (audio_names, AUDIO_DIM, "audio")):
        gauss = np.random.default_rng(_seed_of(tag)).standard_normal((dim, len(names)))
        basis, _ = np.linalg.qr(gauss)                                   # [dim, K] orthonormal columns
        for k, name in enumerate(names):
            codes[name] = (basis[:, k] * np.sqrt(dim)).astype(np.float32)
    return codes


@lru_cache(maxsize=4096)
def word_vector(word: str) -> np.ndarray:
    """[768] the fixed state of one word; an instrument name leans towards its appearance code."""
    vec = np.random.default_rng(_seed_of("word/" + word)).standard_normal(VISUAL_DIM).astype(np.float32)
    if word in INSTRUMENTS:
        vec = 0.6 * world()[f"appearance/{word}"] + 0.8 * vec
    return vec


def question_features(question: str, padding: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """CLIP-like (sentence [768], words [77,768]) of the filled question text. padding="context": each position
    after the end token holds 0.7 x the sentence state + a pad-token state + a small position code, non-zero
    and question-dependent like CLIP's (ModelConfig.mask_padding is then measured against realistic padding)."""
    tokens = question.lower().split()
    if len(tokens) > WORDS_LEN - 2:
        raise ValueError(f"question {question!r} has {len(tokens)} words; at most {WORDS_LEN - 2} fit")
    words = np.zeros((WORDS_LEN, VISUAL_DIM), dtype=np.float32)
    words[0] = word_vector("<start>")
    summary = word_vector("<end>").copy()
    for i, token in enumerate(tokens, start=1):
        vec = word_vector(token)
        words[i] = vec + 0.1 * word_vector(f"<position {i}>")
        summary += np.roll(vec, 7 * i)                                   # order-sensitive summary
    sentence = summary * (np.sqrt(VISUAL_DIM) / np.linalg.norm(summary))
    words[len(tokens) + 1] = sentence                                    # the end-token state
    if padding == "context":
        for j in range(len(tokens) + 2, WORDS_LEN):
            words[j] = 0.7 * sentence + 0.5 * word_vector("<pad>") + 0.1 * word_vector(f"<position {j}>")
    elif padding != "zero":
        raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
    return sentence.astype(np.float32), words


def scene_features(scene: Scene, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(audio [T,128], visual [T,768]) carrying `scene`."""
    W, T = world(), scene.T
    visual = np.tile(W[f"place/{scene.place}"], (T, 1))
    visual += 0.5 * rng.standard_normal(VISUAL_DIM).astype(np.float32)  # per-video nuisance, constant in time
    audio = np.tile(0.3 * W[f"ambience/{scene.place}"], (T, 1))
    seconds = np.arange(T)
    for ins in scene.instruments:
        on = ((seconds >= ins.start) & (seconds < ins.end)).astype(np.float32)[:, None]   # [T, 1]
        if ins.visible:
            c, p = ins.cls, ins.position
            visual += W[f"appearance/{c}"] + W[f"bind/{c}/{p}"] + W[f"layout/{p}"]
        audio += on * ins.loudness * (W[f"timbre/{ins.cls}"] + ins.rhythm * W[f"beat/{ins.cls}"])
    if scene.voice is not None:
        audio[scene.voice[0]:scene.voice[1]] += W["voice"]
    visual += noise * rng.standard_normal(visual.shape).astype(np.float32)
    audio += noise * rng.standard_normal(audio.shape).astype(np.float32)
    return audio.astype(np.float32), visual.astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Question templates: answer(scene, values) -> answer or None (not askable / ambiguous)
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Template:
    name: str
    modality: str
    qtype: str
    text: str                                   # question_content with placeholders
    answers: tuple[str, ...]                    # every answer it can have
    answer: Callable[[Scene, tuple], str | None]
    fillings: Callable[[Scene, np.random.Generator], list[tuple]]
    identifiable: bool = True                   # ask only about scenes whose sounds are identifiable


def _count(n: int, answers=NUMBERS) -> str | None:
    return NUMBERS[n] if n < len(NUMBERS) and NUMBERS[n] in answers else None


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _compare(a: Instrument | None, b: Instrument | None, attribute: str) -> str | None:
    """'yes' if a's attribute exceeds b's by the margin, 'no' if the reverse, None if unclear."""
    if a is None or b is None or a is b or not (a.sounds and b.sounds):
        return None
    if attribute == "duration":
        da, db = a.end - a.start, b.end - b.start
        return None if da == db else _yes(da > db)
    diff = getattr(a, attribute) - getattr(b, attribute)
    return None if abs(diff) < MARGIN else _yes(diff > 0)


def _absent(scene: Scene, rng, k: int = 3) -> list[str]:
    present = {i.cls for i in scene.instruments}
    pool = [c for c in INSTRUMENTS if c not in present]
    return [pool[j] for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]


def _classes(scene: Scene, rng) -> list[tuple]:
    return [(c,) for c in sorted({i.cls for i in scene.instruments}) + _absent(scene, rng)]


def _class_pairs(scene: Scene, rng) -> list[tuple]:
    pool = sorted({i.cls for i in scene.instruments}) + _absent(scene, rng, 2)
    return [(a, b) for a in pool for b in pool if a != b]


def _present(scene: Scene, _rng) -> list[tuple]:
    return [(c,) for c in sorted({i.cls for i in scene.instruments})]


def _present_pairs(scene: Scene, _rng) -> list[tuple]:
    pool = sorted({i.cls for i in scene.instruments})
    return [(a, b) for a in pool for b in pool if a != b]


def _no_values(_scene, _rng) -> list[tuple]:
    return [()]


def _position_pairs(scene: Scene, _rng) -> list[tuple]:
    return [(a, b) for a in POSITIONS for b in POSITIONS if a != b]


def _placed_pairs(scene: Scene, _rng) -> list[tuple]:
    return [(a.cls, a.position, b.cls, b.position) for a in scene.visible() for b in scene.visible() if a is not b]


def _in_order(scene: Scene, key) -> list[Instrument]:
    return sorted(scene.sounding(), key=key)


def _rank(scene: Scene, rank: int, latest: bool = False) -> Instrument | None:
    """The sounding instrument that comes in at `rank` (0 = first) by start time (latest=True: from the end);
    None when its start time is shared with another instrument."""
    order = _in_order(scene, lambda i: -i.start if latest else i.start)
    if rank >= len(order):
        return None
    start = order[rank].start
    return order[rank] if sum(i.start == start for i in order) == 1 else None


def _extreme(scene: Scene, attribute: str, largest: bool) -> Instrument | None:
    order = sorted(scene.sounding(), key=lambda i: getattr(i, attribute), reverse=largest)
    if not order or (len(order) > 1 and abs(getattr(order[0], attribute) - getattr(order[1], attribute)) < MARGIN):
        return None
    return order[0]


def _neighbour(scene: Scene, cls: str, side: str) -> str | None:
    ins = scene.unique(cls)
    if ins is None or not ins.visible or side == "middle":
        return None
    k = POSITIONS.index(ins.position) + (-1 if side == "left" else 1)
    while 0 <= k < len(POSITIONS):
        other = scene.at(POSITIONS[k])
        if other is not None:
            return other.cls
        k += -1 if side == "left" else 1
    return None


def _only_overlap(scene: Scene, cls: str) -> str | None:
    ins = scene.unique(cls)
    if ins is None or not (ins.visible and ins.sounds):
        return None
    others = {o.cls for o in scene.visible() if o is not ins and o.sounds and o.start < ins.end and ins.start < o.end}
    heard_elsewhere = [o for o in scene.sounding() if not o.visible and o.start < ins.end and ins.start < o.end]
    return others.pop() if len(others) == 1 and not heard_elsewhere and cls not in others else None


def _next_to(scene: Scene, cls: str, when: str) -> str | None:
    ins = scene.unique(cls)
    if ins is None or not (ins.visible and ins.sounds):
        return None
    if when == "before":
        candidates = [o for o in scene.sounding() if o.start < ins.start]
        best = max((o.start for o in candidates), default=None)
    else:
        candidates = [o for o in scene.sounding() if o.start > ins.start]
        best = min((o.start for o in candidates), default=None)
    chosen = [o for o in candidates if o.start == best]
    return chosen[0].cls if len(chosen) == 1 and chosen[0].visible and chosen[0].cls != cls else None


def _first_or_last(scene: Scene, which: str) -> Instrument | None:
    return _rank(scene, 0, latest=(which == "last"))


def _position_of(ins: Instrument | None) -> str | None:
    return ins.position if ins is not None and ins.visible else None


def _class_of_visible(ins: Instrument | None) -> str | None:
    return ins.cls if ins is not None and ins.visible else None


def _extremal_visible(scene: Scene, which: str) -> str | None:
    vis = sorted(scene.visible(), key=lambda i: POSITIONS.index(i.position))
    if len(vis) < 2:
        return None
    return (vis[0] if which == "leftest" else vis[-1]).cls


def _all_sound_seen(scene: Scene) -> str | None:
    if not scene.sounding() and scene.voice is None:
        return None
    return _yes(scene.voice is None and all(i.visible for i in scene.sounding()))


POS3 = POSITIONS
CLASSES = INSTRUMENTS
TEMPLATES: tuple[Template, ...] = (
    # --- Audio / Counting
    Template("a_count_heard", "Audio", "Counting", "How many instruments can be heard in the whole video?",
             NUMBERS[1:], lambda s, v: _count(len(s.sounding()), NUMBERS[1:]), _no_values),
    Template("a_is_there_sound", "Audio", "Counting", "Is there a <Object> sound?",
             YES_NO, lambda s, v: _yes(any(i.sounds for i in s.of_class(v[0]))), _classes, identifiable=False),
    Template("a_are_there_sounds", "Audio", "Counting", "Are there <Object> and <Object> sounds?",
             YES_NO, lambda s, v: _yes(all(any(i.sounds for i in s.of_class(c)) for c in v)), _class_pairs, identifiable=False),
    # --- Audio / Comparative
    Template("a_louder", "Audio", "Comparative", "Is the <Object> louder than the <Object>?",
             YES_NO, lambda s, v: _compare(s.unique(v[0]), s.unique(v[1]), "loudness"), _present_pairs),
    Template("a_more_rhythmic", "Audio", "Comparative", "Is the <Object> more rhythmic than the <Object>?",
             YES_NO, lambda s, v: _compare(s.unique(v[0]), s.unique(v[1]), "rhythm"), _present_pairs),
    Template("a_longer", "Audio", "Comparative", "Does the <Object> play longer than the <Object>?",
             YES_NO, lambda s, v: _compare(s.unique(v[0]), s.unique(v[1]), "duration"), _present_pairs),
    # --- Visual / Counting
    Template("v_count_class", "Visual", "Counting", "How many <Object> are in the entire video?",
             NUMBERS[:3], lambda s, v: _count(sum(i.visible for i in s.of_class(v[0])), NUMBERS[:3]), _classes, identifiable=False),
    Template("v_count_types", "Visual", "Counting", "How many types of musical instruments appear in the entire video?",
             NUMBERS[1:4], lambda s, v: _count(len({i.cls for i in s.visible()}), NUMBERS[1:4]), _no_values, identifiable=False),
    Template("v_is_there", "Visual", "Counting", "Is there a <Object> in the entire video?",
             YES_NO, lambda s, v: _yes(any(i.visible for i in s.of_class(v[0]))), _classes, identifiable=False),
    Template("v_are_there", "Visual", "Counting", "Are there <Object> and <Object> instruments in the video?",
             YES_NO, lambda s, v: _yes(all(any(i.visible for i in s.of_class(c)) for c in v)), _class_pairs, identifiable=False),
    # --- Visual / Location
    Template("v_beside", "Visual", "Location", "What is the instrument on the <LR> of the <Object>?",
             CLASSES, lambda s, v: _neighbour(s, v[1], v[0]),
             lambda s, r: [(side, c) for side in ("left", "right") for (c,) in _present(s, r)], identifiable=False),
    Template("v_place", "Visual", "Location", "Where is the performance?",
             PLACES, lambda s, v: s.place, _no_values, identifiable=False),
    Template("v_extreme", "Visual", "Location", "What kind of instrument is the <LRer> instrument?",
             CLASSES, lambda s, v: _extremal_visible(s, v[0]), lambda s, r: [("leftest",), ("rightest",)], identifiable=False),
    Template("v_which", "Visual", "Location", "What kind of musical instrument is it?",
             CLASSES, lambda s, v: s.visible()[0].cls if len(s.visible()) == 1 else None, _no_values, identifiable=False),
    # --- Audio-Visual / Existential
    Template("av_voiceover", "Audio-Visual", "Existential", "Is there a voiceover?",
             YES_NO, lambda s, v: _yes(s.voice is not None), _no_values, identifiable=False),
    Template("av_always", "Audio-Visual", "Existential", "Is the <Object> in the video always playing?",
             YES_NO, lambda s, v: (lambda i: None if i is None or not i.visible else _yes(i.start == 0 and i.end == s.T))(
                 s.unique(v[0])), _present),
    Template("av_sound_seen", "Audio-Visual", "Existential", "Is this sound from the instrument in the video?",
             YES_NO, lambda s, v: _all_sound_seen(s), _no_values),
    # --- Audio-Visual / Counting
    Template("av_count_sounding_class", "Audio-Visual", "Counting", "How many sounding <Object> in the video?",
             NUMBERS[:2], lambda s, v: _count(sum(i.visible and i.sounds for i in s.of_class(v[0])), NUMBERS[:2]),
             _present),
    Template("av_count_silent", "Audio-Visual", "Counting", "How many instruments in the video never make a sound?",
             NUMBERS[:3], lambda s, v: _count(sum(i.visible and not i.sounds for i in s.instruments), NUMBERS[:3]),
             _no_values),
    Template("av_count_sounding", "Audio-Visual", "Counting", "How many instruments in the video are sounding?",
             NUMBERS[:4], lambda s, v: _count(sum(i.visible and i.sounds for i in s.instruments), NUMBERS[:4]),
             _no_values),
    Template("av_count_sounding_types", "Audio-Visual", "Counting",
             "How many types of musical instruments in the video make a sound?", NUMBERS[:4],
             lambda s, v: _count(len({i.cls for i in s.instruments if i.visible and i.sounds}), NUMBERS[:4]),
             _no_values),
    # --- Audio-Visual / Location
    Template("av_same_time", "Audio-Visual", "Location",
             "Which is the musical instrument that sounds at the same time as the <Object>?",
             CLASSES, lambda s, v: _only_overlap(s, v[0]), _present),
    Template("av_first_from", "Audio-Visual", "Location", "Is the <FL> sound coming from the <LR> instrument?",
             YES_NO, lambda s, v: (lambda p: None if p is None else _yes(p == v[1]))(
                 _position_of(_first_or_last(s, v[0]))),
             lambda s, r: [(fl, p) for fl in ("first", "last") for p in POS3]),
    Template("av_where_extreme", "Audio-Visual", "Location", "Where is the <LL> instrument?",
             POS3, lambda s, v: _position_of(_extreme(s, "loudness", v[0] == "loudest")),
             lambda s, r: [("loudest",), ("quietest",)]),
    # --- Audio-Visual / Comparative
    Template("av_louder_named", "Audio-Visual", "Comparative",
             "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
             YES_NO, lambda s, v: _compare(s.at(v[1]), s.at(v[3]), "loudness")
             if s.at(v[1]) is not None and s.at(v[1]).cls == v[0] and s.at(v[3]) is not None and s.at(v[3]).cls == v[2]
             else None, _placed_pairs),
    Template("av_louder_at", "Audio-Visual", "Comparative",
             "Is the instrument on the <LR> louder than the instrument on the <LR>?",
             YES_NO, lambda s, v: _compare(s.at(v[0]), s.at(v[1]), "loudness"), _position_pairs),
    Template("av_rhythmic_at", "Audio-Visual", "Comparative",
             "Is the instrument on the <LR> more rhythmic than the instrument on the <LR>?",
             YES_NO, lambda s, v: _compare(s.at(v[0]), s.at(v[1]), "rhythm"), _position_pairs),
    # --- Audio-Visual / Temporal
    Template("av_nth_in", "Audio-Visual", "Temporal", "What is the <TH> instrument that comes in?",
             CLASSES, lambda s, v: _class_of_visible(_rank(s, ("first", "second", "third").index(v[0]))),
             lambda s, r: [("first",), ("second",), ("third",)]),
    Template("av_where_first", "Audio-Visual", "Temporal", "Where is the <FL> sounding instrument?",
             POS3, lambda s, v: _position_of(_first_or_last(s, v[0])), lambda s, r: [("first",), ("last",)]),
    Template("av_before_after", "Audio-Visual", "Temporal", "Which instrument makes sounds <BA> the <Object>?",
             CLASSES, lambda s, v: _next_to(s, v[1], v[0]),
             lambda s, r: [(ba, c) for ba in ("before", "after") for (c,) in _present(s, r)]),
)
TEMPLATE_BY_NAME = {t.name: t for t in TEMPLATES}


def askable(scene: Scene, rng: np.random.Generator) -> dict[str, dict[str, list[tuple]]]:
    """template name -> answer -> the fillings that ask it about `scene` with that answer."""
    table: dict[str, dict[str, list[tuple]]] = {}
    for tpl in TEMPLATES:
        if tpl.identifiable and not scene.identifiable():
            continue
        for values in tpl.fillings(scene, rng):
            answer = tpl.answer(scene, values)
            if answer is not None:
                assert answer in tpl.answers, (tpl.name, answer)
                table.setdefault(tpl.name, {}).setdefault(answer, []).append(tuple(values))
    return table


# ----------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------
def _choose_questions(table, counts, rng, k: int) -> list[tuple[str, str, tuple]]:
    """Pick up to k (template, answer, values) with distinct templates, keeping answers balanced per template.

    An answer more than BALANCE_SLACK ahead of its template's least-asked answer is not asked; among the
    rest the least-asked template wins, then the smaller lead, then chance."""
    chosen = []
    for _ in range(k):
        options = []
        for name, by_answer in table.items():
            if any(name == c[0] for c in chosen):
                continue
            per_answer = counts[name]
            floor = min(per_answer[a] for a in TEMPLATE_BY_NAME[name].answers)
            total = sum(per_answer.values())
            for answer in by_answer:
                lead = per_answer[answer] - floor
                if lead < BALANCE_SLACK:
                    options.append((total, lead, rng.random(), name, answer))
        if not options:
            break
        *_, name, answer = min(options)
        fillings = table[name][answer]
        values = fillings[rng.integers(len(fillings))]
        counts[name][answer] += 1
        chosen.append((name, answer, values))
    return chosen


def _split_of_videos(n: int, rng) -> list[str]:
    order = rng.permutation(n)
    splits = [""] * n
    bounds = np.cumsum([round(frac * n) for _, frac in SPLITS])
    bounds[-1] = n
    start = 0
    for (name, _), stop in zip(SPLITS, bounds):
        for j in order[start:stop]:
            splits[j] = name
        start = stop
    return splits


def _parameters(num_videos, questions_per_video, T, seed, noise, visible_prob, silent_prob, choices=0,
                padding="zero") -> dict:
    params = dict(generator=GENERATOR, version=VERSION, num_videos=int(num_videos),
                  questions_per_video=int(questions_per_video), T=int(T), seed=int(seed), noise=float(noise),
                  visible_prob=float(visible_prob), silent_prob=float(silent_prob), world_seed=WORLD_SEED)
    if choices:  # only the multiple-choice variant records it: outputs of choices=0 stay valid
        params["choices"] = int(choices)
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
    if padding != "zero":  # likewise: zero-padded outputs (every shipped run's data) keep their metadata
        params["padding"] = padding
    return params


def candidate_answers(answer: str, template_answers, k: int, rng: np.random.Generator) -> list[str]:
    """`k` candidates in random order: `answer`, distractors from `template_answers`, then other official answers."""
    own = [a for a in template_answers if a != answer]
    rest = [a for a in ANSWERS if a != answer and a not in own]
    picked = list(rng.permutation(own))[: k - 1]
    if len(picked) < k - 1:
        picked += list(rng.permutation(rest))[: k - 1 - len(picked)]
    candidates = [answer] + [str(a) for a in picked]
    return [candidates[i] for i in rng.permutation(len(candidates))]


@lru_cache(maxsize=256)
def answer_features(answer: str) -> np.ndarray:
    """[768] the sentence feature of a candidate answer, made like a question's."""
    return question_features(answer)[0]


def generate_synthetic(out_dir, num_videos: int = DEFAULTS["num_videos"],
                       questions_per_video: int = DEFAULTS["questions_per_video"], T: int = DEFAULTS["T"],
                       seed: int = DEFAULTS["seed"], noise: float = DEFAULTS["noise"], overwrite: bool = False,
                       progress: bool = False, visible_prob: float = DEFAULTS["visible_prob"],
                       silent_prob: float = DEFAULTS["silent_prob"], choices: int = DEFAULTS["choices"],
                       padding: str = DEFAULTS["padding"]) -> dict[str, Path]:
    """Write the synthetic benchmark into out_dir; returns {"train","val","test","features","scenes": path}.
    choices=C >= 2 writes the multiple-choice variant (see the module docstring); 0 = none.

    Reuses an existing complete output made with the same parameters unless overwrite=True."""
    if num_videos < 3:
        raise ValueError(f"num_videos must be >= 3 (one video per split at least), got {num_videos}")
    if questions_per_video < 1 or T < 1 or noise < 0:
        raise ValueError(f"need questions_per_video >= 1, T >= 1, noise >= 0; got {questions_per_video}, {T}, {noise}")
    out = Path(out_dir)
    paths = {name: out / f"avqa-{name}.json" for name, _ in SPLITS}
    paths.update(features=out / "features.h5", scenes=out / "scenes.json")
    if not (0 < visible_prob <= 1 and 0 <= silent_prob <= 1):
        raise ValueError(f"need 0 < visible_prob <= 1 and 0 <= silent_prob <= 1; got {visible_prob}, {silent_prob}")
    if choices and not 2 <= choices <= len(ANSWERS):
        raise ValueError(f"choices must be 0 (none) or between 2 and {len(ANSWERS)}, got {choices}")
    params = _parameters(num_videos, questions_per_video, T, seed, noise, visible_prob, silent_prob, choices, padding)
    done = out / "synthetic.json"                                       # written last: marks a complete output

    def complete() -> bool:
        return done.exists() and json.loads(done.read_text()) == params and all(p.exists() for p in paths.values())

    if not overwrite and complete():
        return paths
    out.mkdir(parents=True, exist_ok=True)
    # One writer per folder: a second caller (another notebook, a parallel test worker) waits for the first,
    # then finds its complete output and reuses it.
    lock = WriterLock(out, lock_file=out / ".synthetic.lock", what="synthetic benchmark folder", wait=True)
    try:
        if overwrite or not complete():
            _write_benchmark(paths, done, params, num_videos, questions_per_video, T, seed, noise, progress,
                             visible_prob, silent_prob, choices, padding)
    finally:
        lock.release()
    return paths


def _write_benchmark(paths, done, params, num_videos, questions_per_video, T, seed, noise, progress, visible_prob,
                     silent_prob, choices, padding) -> None:
    """generate_synthetic's writing part (the caller holds the folder's lock)."""
    done.unlink(missing_ok=True)
    paths["features"].unlink(missing_ok=True)

    rng = np.random.default_rng([int(seed), 0])
    choice_rng = np.random.default_rng([int(seed), 1])                  # own stream: scenes stay those of choices=0
    splits = _split_of_videos(num_videos, rng)
    counts = {s: defaultdict(Counter) for s, _ in SPLITS}
    scenes, records = [], {s: [] for s, _ in SPLITS}
    text_owner: dict[str, int] = {}                                     # filled question -> first question_id
    question_id = 0
    iterator = range(num_videos)
    if progress:
        iterator = tqdm(iterator, desc="synthetic videos", unit="video")
    with FeatureStore(paths["features"], "a") as store:
        store.set_attrs(**params, complete=False)
        for v in iterator:
            video_id = f"syn{v:05d}"
            scene = sample_scene(rng, video_id, T, visible_prob, silent_prob)
            scenes.append(scene)
            audio, visual = scene_features(scene, noise, rng)
            store.put("audio", video_id, audio)
            store.put("visual", video_id, visual)
            split = splits[v]
            for name, answer, values in _choose_questions(askable(scene, rng), counts[split], rng, questions_per_video):
                tpl = TEMPLATE_BY_NAME[name]
                question = fill_question(tpl.text, values)
                if question in text_owner:                              # same text, same features: link
                    for kind in ("question", "words"):
                        store.link(kind, question_id, text_owner[question])
                else:
                    sentence, words = question_features(question, padding)
                    store.put("question", question_id, sentence)
                    # non-zero padding hides the word positions: record the token count (start + words + end)
                    counts_attr = {} if padding == "zero" else {TOKENS_ATTR: len(question.split()) + 2}
                    store.put("words", question_id, words, **counts_attr)
                    text_owner[question] = question_id
                record = {
                    "video_id": video_id, "question_id": question_id,
                    "type": json.dumps([tpl.modality, tpl.qtype]), "question_content": tpl.text,
                    "templ_values": json.dumps(list(values)), "question_deleted": 0, "anser": answer,
                }
                if choices:
                    record["multi_choice"] = candidate_answers(answer, tpl.answers, choices, choice_rng)
                    store.put("choices", question_id, np.stack([answer_features(a) for a in record["multi_choice"]]))
                records[split].append(record)
                question_id += 1
        store.set_attrs(complete=True, num_questions=question_id)
    for split, rows in records.items():
        write_text(paths[split], json.dumps(rows, indent=0))
    write_text(paths["scenes"], json.dumps([asdict(s) for s in scenes], indent=0))
    write_text(done, json.dumps(params))


# ----------------------------------------------------------------------------------------------------
# Ceilings
# ----------------------------------------------------------------------------------------------------
def _load_split(root, split: str) -> list[dict]:
    return json.loads((Path(root) / f"avqa-{split}.json").read_text())


def question_only_ceiling(root, train_split: str = "train", test_split: str = "test") -> dict:
    """Accuracy on `test_split` of the best question-only rule learnt from `train_split` counts: the majority
    answer of the same filled question, else of the same template, else the overall majority.
    Returns {"overall": acc, "by_type": {"Audio Counting": acc, ...}, "by_template": {...}, "n": N}."""
    train, test = _load_split(root, train_split), _load_split(root, test_split)
    by_text, by_template = defaultdict(Counter), defaultdict(Counter)
    for r in train:
        by_text[(r["question_content"], r["templ_values"])][r["anser"]] += 1
        by_template[r["question_content"]][r["anser"]] += 1
    overall = Counter(r["anser"] for r in train)
    hits, per_type, per_template = [], defaultdict(list), defaultdict(list)
    for r in test:
        votes = by_text.get((r["question_content"], r["templ_values"])) or by_template.get(r["question_content"]) or overall
        hit = votes.most_common(1)[0][0] == r["anser"]
        hits.append(hit)
        per_type[" ".join(json.loads(r["type"]))].append(hit)
        per_template[r["question_content"]].append(hit)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    return {"overall": mean(hits), "n": len(hits), "by_type": {k: mean(v) for k, v in per_type.items()},
            "by_template": {k: mean(v) for k, v in per_template.items()}}


def question_only_choice_ceiling(root, train_split: str = "train", test_split: str = "test") -> float:
    """Multiple-choice variant (`choices=C`): accuracy on `test_split` of a question-only rule that picks, among
    each question's candidates, the one most often the answer of the same filled question in `train_split`,
    then of the same template, then overall (ties: the earlier candidate)."""
    train, test = _load_split(root, train_split), _load_split(root, test_split)
    by_text, by_template, overall = defaultdict(Counter), defaultdict(Counter), Counter()
    for r in train:
        by_text[(r["question_content"], r["templ_values"])][r["anser"]] += 1
        by_template[r["question_content"]][r["anser"]] += 1
        overall[r["anser"]] += 1
    if test and "multi_choice" not in test[0]:
        raise ValueError(f"{root} has no candidate answers: generate it with choices=C (`avmaster synth --choices 4`)")
    hits = [max(r["multi_choice"], key=lambda a: (by_text[(r["question_content"], r["templ_values"])][a],
                                                  by_template[r["question_content"]][a], overall[a])) == r["anser"]
            for r in test]
    return float(np.mean(hits)) if hits else float("nan")


def chance_by_template(root, split: str = "test") -> dict[str, float]:
    """1 / #distinct answers of each template in `split` (what guessing within the template gives)."""
    answers = defaultdict(set)
    for r in _load_split(root, split):
        answers[r["question_content"]].add(r["anser"])
    return {k: 1 / len(v) for k, v in answers.items()}


def load_scenes(root) -> dict[str, Scene]:
    scenes = {}
    for s in json.loads((Path(root) / "scenes.json").read_text()):
        s["instruments"] = [Instrument(**i) for i in s["instruments"]]
        s["voice"] = tuple(s["voice"]) if s["voice"] is not None else None
        scenes[s["video_id"]] = Scene(**s)
    return scenes


def decode_scene(audio: np.ndarray, visual: np.ndarray, video_id: str = "") -> Scene:
    """Read a scene back from its features with the world's codes (projection + thresholds): a simple
    audio-visual reader, whose question accuracy shows what the features let a model reach."""
    W, T = world(), audio.shape[0]
    vis_norm2, aud_norm2 = float(VISUAL_DIM), float(AUDIO_DIM)
    proj_v = lambda name: visual @ W[name] / vis_norm2                   # [T]
    proj_a = lambda name: audio @ W[name] / aud_norm2                    # [T]
    place = max(PLACES, key=lambda p: proj_v(f"place/{p}").mean())
    voice_on = proj_a("voice") > 0.5
    voice = (int(np.argmax(voice_on)), int(T - np.argmax(voice_on[::-1]))) if voice_on.any() else None
    instruments = []
    silent = np.zeros(T, dtype=bool)
    for c in INSTRUMENTS:
        timbre, beat = proj_a(f"timbre/{c}"), proj_a(f"beat/{c}")        # [T]: loudness, loudness * rhythm
        heard = _best_interval(timbre, level=0.2)
        heard = heard if heard.any() and timbre[heard].mean() > 0.3 else silent
        seen = [p for p in POSITIONS if proj_v(f"bind/{c}/{p}").mean() > 0.5]
        # The one seen instrument of a class gets the class's sound; a sound with nothing seen is off-screen.
        # (Two seen instances sharing a sound cannot be told apart; such scenes get no sound questions.)
        for k, p in enumerate(seen):
            instruments.append(_interval_instrument(c, p, heard if k == 0 else silent, timbre, beat))
        if not seen and heard.any():
            instruments.append(_interval_instrument(c, None, heard, timbre, beat))
    return Scene(video_id, T, place, voice, instruments)


def _best_interval(x: np.ndarray, level: float) -> np.ndarray:
    """[T] bool: the contiguous interval that maximises sum(x - level) (a matched filter for one interval)."""
    gain = np.concatenate([[0.0], np.cumsum(x - level)])
    best, span = 0.0, (0, 0)
    for start in range(len(x)):
        for end in range(start + 1, len(x) + 1):
            if gain[end] - gain[start] > best:
                best, span = gain[end] - gain[start], (start, end)
    on = np.zeros(len(x), dtype=bool)
    on[span[0]:span[1]] = True
    return on


def _interval_instrument(cls, position, on, timbre, beat) -> Instrument:
    if not on.any():
        return Instrument(cls, position, 0, 0, 0.0, 0.0)
    start, end = int(np.argmax(on)), int(len(on) - np.argmax(on[::-1]))
    loud = float(timbre[start:end].mean())
    return Instrument(cls, position, start, end, loud, float(beat[start:end].mean() / max(loud, 1e-3)))


def decoded_scene_accuracy(root, split: str = "test") -> dict:
    """Accuracy of answering `split` with the templates' rules on scenes decoded from the stored features."""
    records = _load_split(root, split)
    by_name = {t.text: t for t in TEMPLATES}
    hits, per_type = [], defaultdict(list)
    with FeatureStore(Path(root) / "features.h5", "r") as store:
        decoded = {}
        for r in records:
            vid = r["video_id"]
            if vid not in decoded:
                decoded[vid] = decode_scene(store.get("audio", vid), store.get("visual", vid), vid)
            tpl = by_name[r["question_content"]]
            hit = tpl.answer(decoded[vid], tuple(json.loads(r["templ_values"]))) == r["anser"]
            hits.append(hit)
            per_type[" ".join(json.loads(r["type"]))].append(hit)
    return {"overall": float(np.mean(hits)), "n": len(hits), "by_type": {k: float(np.mean(v)) for k, v in per_type.items()}}


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def _run(args) -> int:
    t0 = time.perf_counter()
    paths = generate_synthetic(args.out, num_videos=args.videos, questions_per_video=args.questions,
                               T=args.T, seed=args.seed, noise=args.noise, overwrite=args.overwrite, progress=True,
                               visible_prob=args.visible_prob, silent_prob=args.silent_prob, choices=args.choices,
                               padding=args.padding)
    seconds = time.perf_counter() - t0
    for name in ("train", "val", "test"):
        n = len(_load_split(args.out, name))
        print(f"{name:>8}: {paths[name]}  ({n} questions)")
    print(f"features: {paths['features']}  ({paths['features'].stat().st_size / 2**20:.1f} MiB)")
    print(f"  scenes: {paths['scenes']}")
    print(f"done in {seconds:.1f} s")
    if args.ceilings:
        ceiling = question_only_ceiling(args.out)
        decoded = decoded_scene_accuracy(args.out)
        print(f"question-only ceiling (test): {ceiling['overall']:.3f}; decoded-scene reader (test): "
              f"{decoded['overall']:.3f}")
        for kind in sorted(ceiling["by_type"]):
            print(f"  {kind:<28} question-only {ceiling['by_type'][kind]:.3f}   decoded {decoded['by_type'][kind]:.3f}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate the bundled synthetic benchmark (CPU, seconds)",
                              description="Generate MUSIC-AVQA-like scenes, features and questions "
                                          "(avmaster_core/synthetic.py explains the benchmark).")
    p.add_argument("--out", required=True, help="output folder (avqa-*.json, features.h5, scenes.json)")
    p.add_argument("--videos", type=AT_LEAST_1, default=DEFAULTS["num_videos"], help="number of videos (default %(default)s)")
    p.add_argument("--questions", type=AT_LEAST_1, default=DEFAULTS["questions_per_video"],
                   help="questions per video (default %(default)s)")
    p.add_argument("--T", type=AT_LEAST_1, default=DEFAULTS["T"], help="seconds per video (default %(default)s)")
    p.add_argument("--seed", type=AT_LEAST_0, default=DEFAULTS["seed"], help="scene/question seed (default %(default)s)")
    p.add_argument("--noise", type=NON_NEGATIVE, default=DEFAULTS["noise"],
                   help="per-element feature noise std (default %(default)s)")
    p.add_argument("--visible-prob", type=FRACTION, default=DEFAULTS["visible_prob"],
                   help="chance an instrument is on screen (default %(default)s)")
    p.add_argument("--silent-prob", type=FRACTION, default=DEFAULTS["silent_prob"],
                   help="chance a visible instrument stays silent (default %(default)s)")
    p.add_argument("--choices", type=AT_LEAST_0, default=DEFAULTS["choices"], metavar="C",
                   help="multiple-choice variant (AVQA's task): C candidate answers per question; load it as "
                        "--dataset synthetic_mc (default 0: none)")
    p.add_argument("--padding", default=DEFAULTS["padding"], choices=PADDINGS,
                   help="word features after the end token: zero (default; every shipped run's data) or context "
                        "(non-zero and question-dependent, like CLIP's; recorded in synthetic.json)")
    p.add_argument("--overwrite", action="store_true", help="regenerate even if the output exists")
    p.add_argument("--ceilings", action="store_true", help="also print the question-only and decoded-scene ceilings")
    p.set_defaults(func=_run, outputs={"out": "folder"})
