"""What a study has finished and what `hwsim study` would still compute, read from its
results folder without loading data or models (`hwsim study FILE --status`)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from hwsim.models.checkpoint import epochs_trained, last_test_acc, read_checkpoint

from .files import read_json, read_partial
from .study import attack_partial, checkpoint_path
from .study_spec import Study
from .sweep import read_rows, voltage_grid


def study_status(study: Study) -> pd.DataFrame:
    """One row per method: training epochs and test accuracy, swept voltages, fixed-BER
    points and BFA seeds done, each as 'done/wanted'. A cross-accelerator study:
    hwsim.accelerators.cross_status."""
    if study.accelerators:
        from .accelerators import cross_status
        return cross_status(study)
    out = study.out_dir
    grid = {round(v, 6) for v in voltage_grid(study.voltages.min, study.voltages.max,
                                              study.voltages.step)}
    rows = read_rows(out / "results.csv")
    at_ber, attacks = read_json(out / "at_ber.json"), read_json(out / "attacks.json")
    table = []
    for m in study.methods:
        path = checkpoint_path(study, m)
        epochs, acc = 0, None
        if path.exists():
            ck = read_checkpoint(path)
            epochs, acc = ck["epoch"], last_test_acc(ck)
        want = "-" if m.checkpoint else study.training.epochs
        # every scenario's points (hwsim.scenario; one label each) count
        swept = sum(len(grid & set(rows.loc[rows["label"] == sc.label(m.name), "voltage"]
                                   .round(6))) for sc in study.scenarios)
        bers = at_ber.get(m.name, {})
        bfa = attacks.get(m.name, {})
        mine = [a.label for a in study.assignments if a.method == m.name]
        per_layer = ({"per-layer points": f"{int(rows['label'].isin(mine).sum())}/{len(mine)}"}
                     if study.assignments else {})
        table.append({
            "method": m.name, "trained (epochs)": f"{epochs}/{want}",
            "test acc %": "" if acc is None else f"{100 * acc:.2f}",
            "swept (voltages)": f"{swept}/{len(grid) * len(study.scenarios)}",
            "fixed BERs": f"{sum(repr(b) in bers for b in study.bers)}/{len(study.bers)}",
            "BFA (seeds)": (f"{len(bfa.get('n_flips', [])) if bfa else _bfa_kept(study, m)}/"
                            f"{study.attacks.bfa_seeds}"), **per_layer})
    return pd.DataFrame(table)


def _bfa_kept(study: Study, m) -> int:
    """Seeds an interrupted BFA of method `m` finished (its per-seed records, if they still
    match the checkpoint and settings; a rerun continues from them)."""
    if not checkpoint_path(study, m).exists():
        return 0
    partial, settings = attack_partial(study, m.name)
    try:
        return len(read_partial(partial, settings, "runs", dict))
    except OSError:
        return 0


def baseline_status(study: Study) -> str | None:
    """One line on the checkpoint every method is fine-tuned from (None: trained from
    scratch): how far its training is, since fine-tuning waits for it to finish."""
    src = study.training.init_from
    if not src:
        return None
    if not Path(src).exists():
        return (f"baseline {src}: missing; train it first (the study file's header has the "
                f"command)")
    ck = read_checkpoint(src)
    (done, wanted), acc = epochs_trained(ck), last_test_acc(ck)
    state = "finished" if done >= wanted else "in progress: resume it with hwsim train ... --resume"
    return (f"baseline {src}: {done}/{wanted} epochs"
            + ("" if acc is None else f", test acc {100 * acc:.2f}%") + f" ({state})")
