"""Finished attack runs kept per seed beside a result file while an attack runs, so an
interrupted `hwsim attack bfa|tbfa --out` or a study's BFA continues with the seeds still
missing instead of starting over (the records are JSON; nothing in them is run)."""
from __future__ import annotations

from pathlib import Path

from hwsim.models.attacks import AttackRun
from hwsim.models.quant import quant_layers

from .files import read_partial, write_partial


def partial_file(out) -> Path:
    """Where the finished seeds of the attack writing `out` are kept until `out` is written."""
    return Path(f"{out}.partial.json")


def resumable(partial: Path, settings: dict, model, log=None) -> dict:
    """bfa_nflip / tbfa keyword arguments (`done`, `on_run`) that take the runs recorded in
    `partial` with the same `settings` (those naming layers `model` lacks, or filed under
    another seed, start over) and record each new run there."""
    layers = {n for n, _ in quant_layers(model)}

    def parse(runs: dict) -> dict:
        done = {int(k): AttackRun.from_json(v) for k, v in runs.items()}
        if any(k != r.seed or not {f.layer for f in r.flips} <= layers
               for k, r in done.items()):
            raise ValueError("records of another model")
        return done
    done = read_partial(partial, settings, "runs", parse, log, what="seeds")

    def save(run: AttackRun) -> None:
        done[run.seed] = run
        write_partial(partial, settings, "runs", {str(k): r.to_json() for k, r in done.items()})
    return {"done": done, "on_run": save}
