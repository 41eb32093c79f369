"""Watching a training run from a notebook: a loss plot redrawn in place, and a run stopped after N steps.

    live = LiveLosses(every=5).start("the loop written out")
    live.add(step, terms)                                    # a loop written out: {"qa": tensor, ..., "total"}
    train(..., step_callback=live.start("train()"))          # or train()'s steps, drawn over the loop's
    train(..., step_callback=StopAfter(13))                  # raises TrainingStopped after global step 13

The picture is one display output that each redraw replaces (IPython's display_id): JupyterLab shows it move,
and an executed notebook (papermill, nbval, `make demo`) stores only its last state, one PNG.
"""
from __future__ import annotations

import pandas as pd

from .plots import plot_training_losses


class LiveLosses:
    """Every loss term of every step of one or more runs (labels), drawn by `plots.plot_training_losses`."""

    def __init__(self, every: int = 10, title: str = "Loss on each training batch (eq. 5-7)"):
        self.every, self.title = every, title
        self.rows: list[dict] = []
        self.run, self._handle = "", None

    def start(self, run: str) -> "LiveLosses":
        """Record the following steps as run `run`, in a new picture in the current cell (the steps recorded
        before stay in it, so a second run is drawn over the first)."""
        self.run, self._handle = run, None
        return self

    def add(self, step: int, losses: dict) -> None:
        """One step's loss terms (tensors or floats); redraws every `every` steps."""
        self.rows += [{"run": self.run, "step": int(step), "term": k, "loss": float(v)} for k, v in losses.items()]
        if step % self.every == 0:
            self.draw()

    def __call__(self, info: dict) -> None:
        """train()'s step_callback: {"global_step", "losses", ...}."""
        self.add(info["global_step"], info["losses"])

    def frame(self, run: str | None = None) -> pd.DataFrame:
        """The recorded steps (columns run, step, term, loss), of one run if given."""
        rows = pd.DataFrame(self.rows, columns=["run", "step", "term", "loss"])
        return rows if run is None else rows[rows["run"] == run]

    def by_step(self, run: str) -> pd.DataFrame:
        """One run's losses as a table: a row per step, a column per term."""
        return self.frame(run).pivot(index="step", columns="term", values="loss")

    def draw(self) -> None:
        """Show the picture as it is now, replacing this run's previous one."""
        from IPython.display import display

        if not self.rows:
            return
        fig = plot_training_losses(self.frame(), title=self.title)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


class TrainingStopped(Exception):
    """Raised by StopAfter: the run stopped as a Ctrl-C or a killed job would stop it."""


class StopAfter:
    """train()'s step_callback that stops the run after global step `step` (its last.pt is the last one saved
    before, `TrainConfig.checkpoint_every_steps`); `train(..., resume=True)` continues it from there."""

    def __init__(self, step: int):
        self.step = step

    def __call__(self, info: dict) -> None:
        if info["global_step"] >= self.step:
            raise TrainingStopped(f"stopped after step {info['global_step']}")
