"""`avmaster ask`: answer a question about your own video with a trained checkpoint, and say which path
(audio, visual or both) drove the answer."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.checkpoint import load_checkpoint, read_checkpoint
from ..core.options import AT_LEAST_1
from ..core.vocab import ANSWERS, question_text
from .encoders import AudioEncoder, TextEncoder, VisualEncoder
from .pipeline import (add_encoder_options, build_encoders, build_text, decode_warnings, extract_device, print_notes,
                       seconds_option, stated_duration)
from .routes import DEFAULT_ROUTE, get_route
from .video import check_video


def which_path(out: dict, answer: int) -> tuple[str, dict]:
    """Which of audio, visual or both drove `answer`: each path's logit for it, centred over the answers.

    The prediction is argmax(logits_qa + logits_a + logits_v); softmax ignores a constant per path, so a
    path's push towards the answer is its logit minus its mean logit. Audio (visual) drove it when the
    audio (visual) push is at least twice the other's; otherwise both did.
    """
    push = {name: float(out[f"logits_{name}"][0, answer] - out[f"logits_{name}"][0].mean())
            for name in ("qa", "a", "v") if f"logits_{name}" in out}
    a, v = max(push.get("a", 0.0), 0.0), max(push.get("v", 0.0), 0.0)
    if a == v == 0.0:
        verdict = "neither audio nor visual path (the multimodal path alone)"
    elif a >= 2 * v:
        verdict = "audio"
    elif v >= 2 * a:
        verdict = "visual"
    else:
        verdict = "both"
    return verdict, push


def check_question(question: str, top: int) -> None:
    """ValueError for an empty question or a --top below 1."""
    if not question_text(question):
        raise ValueError("the question is empty: ask something, e.g. \"How many instruments are sounding?\"")
    if top < 1:
        raise ValueError(f"--top {top}: must be >= 1 (the number of answers listed)")


def ask(video: str | Path, question: str, checkpoint: str | Path, clip: VisualEncoder, vggish: AudioEncoder,
        seconds: int | None = 60, top: int = 5, device: str = "cpu", route: str = DEFAULT_ROUTE,
        text: TextEncoder | None = None) -> dict:
    """Answer `question` about `video` with a trained checkpoint: {"answer", "top": [(answer, p)], "driver", "push"}.

    clip, vggish: the visual and audio encoders; text: the question encoder (default: `clip`, a CLIP).
    route: decode as the checkpoint's training features were made ("official" for the released ones).
    """
    check_question(question, top)
    trained_T = (read_checkpoint(checkpoint).get("data_config") or {}).get("T")
    notes = []
    if trained_T is not None and seconds != trained_T:
        notes.append(f"the checkpoint was trained on T={trained_T} segments, this video is read as "
                     f"{'its own length' if seconds is None else f'{seconds} segments'} "
                     f"(--seconds {trained_T} matches the training)")
    text = text or clip
    decoded = get_route(route).decode(video, seconds, frame_transform=clip.preprocess, sample_rate=vggish.sample_rate)
    decoded.info["stated_duration_s"] = stated_duration(video)
    notes += decode_warnings(decoded.info, seconds)
    tokens = len(text.tokenizer.encode(question_text(question))) + 2 if hasattr(text.tokenizer, "encode") else 0
    if tokens > 77:  # CLIP reads 77 positions, start and end tokens included
        notes.append(f"the question is {tokens} CLIP tokens long: only the first 77 are read (shorten it)")
    visual = clip.encode(torch.stack(decoded.frames))  # [T, D]
    audio = vggish.encode(torch.as_tensor(vggish.preprocess(decoded.audio)))  # [T, audio dim]
    sentence, words = text.encode_text([question_text(question)])  # [1, D], [1, 77, D]
    model, _cfg = load_checkpoint(checkpoint, map_location=device)
    model.eval()
    batch = {"audio": audio[None], "visual": visual[None], "question": sentence, "words": words}
    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.inference_mode():
        out = model(batch)
    probs = torch.softmax(out["logits"][0].float(), dim=-1)
    p, idx = probs.topk(min(top, len(probs)))
    answer = int(idx[0])
    driver, push = which_path(out, answer)
    return {"answer": ANSWERS[answer], "top": [(ANSWERS[int(i)], float(q)) for q, i in zip(p, idx)],
            "driver": driver, "push": push, "video_info": decoded.info, "warnings": notes}


def _run_ask(args) -> int:
    # every input before the encoders and the model load
    check_question(args.question, args.top)
    seconds = seconds_option(args.seconds)
    check_video(args.video)
    read_checkpoint(args.checkpoint)
    visual, audio = build_encoders(args)
    result = ask(args.video, args.question, args.checkpoint, visual, audio, seconds=seconds,
                 top=args.top, device=extract_device(args.device), route=args.route, text=build_text(args, visual))
    print_notes(result["warnings"])
    print(f"Q: {args.question}")
    print(f"A: {result['answer']}   (driven by: {result['driver']})")
    for answer, p in result["top"]:
        print(f"  {p:7.2%}  {answer}")
    print("  path push (logit - mean): " + ", ".join(f"{k}={v:+.2f}" for k, v in result["push"].items()))
    return 0


def register(subparsers) -> None:
    a = subparsers.add_parser("ask", help="answer a question about your own video with a trained checkpoint")
    a.add_argument("video")
    a.add_argument("question")
    a.add_argument("--checkpoint", required=True, help="a checkpoint written by `avmaster train`")
    a.add_argument("--top", type=AT_LEAST_1, default=5)
    add_encoder_options(a)
    a.set_defaults(func=_run_ask)
