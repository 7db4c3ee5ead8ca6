"""The pieces of a sweep or study that run as Ray tasks (hwsim/executor.py), and the driver
side that submits them and writes each result the moment its task finishes.

Tasks: one training per method; one evaluation point per checkpoint x voltage (sweep) and per
checkpoint x BER (a study's `bers:`); one block of persistent chips per checkpoint x range of
chips (each chip along the whole voltage grid); one BFA run per method x attack seed. Each task
computes exactly what the serial code computes for that piece, with the same seed
(`point_seed`, the chip seed, the attack seed), so the numbers are the same; the driver writes
them through the same locked merges (`merge_rows`, `update_json`), so a
re-run skips what is done. Data travel through
Ray's object store; checkpoints are read from their paths (every node needs the same files:
a task checks the checkpoint's hash against the driver's).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from hwsim.models.checkpoint import load_checkpoint
from hwsim.models.errors import ConfigError
from hwsim.models.device import check_device_name, resolve_device
from hwsim.models.estimate import estimate_accuracy
from hwsim.models.evaluate import StoredWeights, accuracy, on_model_device

from .files import read_json, update_json

_NETWORK: dict = {}  # per worker process: the network it evaluated last, ready to evaluate


def _abs(path) -> str:
    """A path as tasks get it: absolute (a worker's working folder is not the driver's)."""
    return str(Path(path).absolute())


def _network(checkpoint: str, sha: str, device: str, data, data_key: str):
    """(model on `device`, test tensors there, stored integers, clean accuracy), as the serial
    sweep prepares them once per checkpoint; kept for the worker's next point."""
    from .sweep import file_sha256
    key = (checkpoint, sha, device, data_key)
    if key not in _NETWORK:
        _NETWORK.clear()
        if not Path(checkpoint).is_file() or file_sha256(checkpoint) != sha:
            raise ConfigError(f"checkpoint {checkpoint}: missing or different on a Ray node "
                              "than on the driver; every node needs the same files at the "
                              "same paths (or a shared filesystem)")
        model, _ = load_checkpoint(checkpoint)
        model.to(resolve_device(device))
        xy = on_model_device(data, model)
        _NETWORK[key] = (model, xy, StoredWeights(model), accuracy(model, xy))
    return _NETWORK[key]


def eval_point(checkpoint: str, sha: str, device: str, data, data_key: str, ber: float,
               seed: int, kw: dict):
    """Task: (clean accuracy, Estimate, test images) of one checkpoint at one (weight) bit
    error rate. With `act_ber` > 0 and `scenario` in kw, the point also has transient
    activation faults, estimated as the serial sweep does (hwsim.scenario.activation_estimate
    with max_realizations passes)."""
    model, xy, stored, clean = _network(checkpoint, sha, device, data, data_key)
    kw = dict(kw)
    act_ber, scenario = kw.pop("act_ber", 0.0), kw.pop("scenario", None)
    if act_ber > 0:
        from .scenario import activation_estimate
        est = activation_estimate(model, xy, ber, act_ber, scenario,
                                  realizations=kw["max_realizations"], seed=seed, clean=clean,
                                  stored=stored)
    else:
        est = estimate_accuracy(model, xy, ber, seed=seed, stored=stored, clean=clean, **kw)
    return clean, est, len(xy[1])


def submit_points(executor, checkpoint: str, sha: str, test, device: str,
                  points: list[tuple], kw: dict, finish) -> None:
    """Submit one eval_point task per (key, ber, seed) or (key, ber, seed, point kw) of
    `points` (a point's kw is merged into `kw`); `finish(key, clean, estimate, test_images)`
    runs here as each one finishes (it writes the result)."""
    ref = executor.put(test)
    device = check_device_name(device)
    task_device, _ = executor.gpus(device)
    with executor.batch(f"ray: {Path(checkpoint).name}"):  # all at once (in a study's batch)
        for key, ber, seed, *extra in points:
            executor.submit(eval_point, _abs(checkpoint), sha, task_device, ref, ref.hex(),
                            ber, seed, {**kw, **(extra[0] if extra else {})}, device=device,
                            done=lambda r, k=key: finish(k, *r))


CHIP_BLOCK_MAX = 20  # chips per task at most (the serial run also writes every 20 chips)


def eval_chips(checkpoint: str, sha: str, device: str, data, data_key: str, chips: list[int],
               seed: int, grid: list[float], bers: list[float], faults, layout, label: str):
    """Task: (clean accuracy, RESULTS.chips.csv rows) of a block of chips along the grid."""
    from .chips import chip_rows
    model, xy, stored, clean = _network(checkpoint, sha, device, data, data_key)
    return clean, [r for c in chips for r in chip_rows(model, xy, c, seed, grid, bers, faults,
                                                        layout, stored, clean, label, sha)]


def chip_blocks(todo: list[int], slots: float) -> list[list[int]]:
    """`todo` cut into consecutive blocks: about 4 per task slot of the cluster (so slots
    stay busy while blocks differ in run time), at most CHIP_BLOCK_MAX chips each."""
    size = max(1, min(CHIP_BLOCK_MAX, -(-len(todo) // max(1, int(4 * slots)))))
    return [todo[i:i + size] for i in range(0, len(todo), size)]


def submit_chips(executor, checkpoint: str, sha: str, test, device: str, todo: list[int],
                 args: tuple, write, summarize) -> None:
    """chip_sweep's chips `todo` as eval_chips tasks (`args`: seed, grid, bers, faults,
    layout, label); `write(rows)` runs here as each block finishes, `summarize(clean)` after
    the last one."""
    ref = executor.put(test)
    device = check_device_name(device)
    task_device, _ = executor.gpus(device)
    blocks = chip_blocks(todo, executor.slots())
    left = [len(blocks)]

    def finish(result):
        clean, rows = result
        write(rows)
        left[0] -= 1
        if not left[0]:
            summarize(clean)
    with executor.batch(f"ray: chips {Path(checkpoint).name}"):
        for block in blocks:
            executor.submit(eval_chips, _abs(checkpoint), sha, task_device, ref, ref.hex(),
                            block, *args, device=device, done=finish)


def submit_sweep(executor, out: Path, config: dict, label: str, energy, todo: list[float],
                 test, device: str, ber_model, kw: dict, seed: int, checkpoint: str,
                 fingerprint: str, scenario=None) -> pd.DataFrame:
    """sweep()'s points `todo` as tasks, each row appended to `out` as its task finishes;
    a point whose scaled domains hold activations carries its activation BER and the
    scenario (eval_point). Returns the rows in `out`: all of them, unless inside an executor
    batch (whose end collects the tasks)."""
    from .sweep import DEFAULT, append_rows, point_row, point_seed, read_rows
    scenario = scenario or DEFAULT

    def finish(v, clean, est, n):
        append_rows(out, [point_row(config, label, v, ber_model.ber(v), clean, est, energy,
                                    seed, n, checkpoint, fingerprint, scenario)])
    points = []
    for v in todo:
        weight_ber, act_ber = scenario.bers(energy, v, ber_model)
        extra = {"act_ber": act_ber, "scenario": scenario} if act_ber > 0 else {}
        points.append((v, weight_ber, point_seed(seed, v), extra))
    submit_points(executor, checkpoint, fingerprint, test, device, points, kw, finish)
    return read_rows(out)


def train_one(cfg, path: str, data, device: str, precision: str = "fp32") -> str:
    """Task: train (or resume) one method's checkpoint, its epoch log beside it."""
    from hwsim.models.train import train
    log_file = Path(path + ".log")
    log_file.parent.mkdir(parents=True, exist_ok=True)

    def epoch_log(line):
        with open(log_file, "a") as f:
            f.write(line + "\n")
    train(cfg, path, resume=True, progress=False, log=epoch_log, data=data, device=device,
          precision=precision)
    return path


def bfa_seed(checkpoint: str, test, device: str, kw: dict, seed: int):
    """Task: one BFA run (models.attacks.bfa_run) with attack seed `seed`."""
    from hwsim.models.attacks import bfa_run
    model, _ = load_checkpoint(checkpoint)
    model.to(resolve_device(device))
    return bfa_run(model, test, seed=seed, **kw)


def run_remote(study, executor, get_data, log) -> None:
    """A study's trainings, then all its evaluation points, fixed-BER points and attack seeds,
    as Ray tasks; each result is written as it arrives. What is already done is skipped (the
    serial steps that follow in run_study then find nothing left to do)."""
    from .study import _trained, checkpoint_path, train_config, train_precision
    data = executor.put(get_data())
    task_device, _ = executor.gpus(study.device)
    with executor.batch("ray: trainings"):
        for m in study.methods:
            path, cfg = checkpoint_path(study, m), train_config(study, m)
            if m.checkpoint or _trained(path, cfg):
                continue
            log(f"== training {m.name} -> {path} (Ray task)")
            executor.submit(train_one, cfg, _abs(path), data, task_device,
                            train_precision(study), device=study.device,
                            threads=study.training.threads,
                            done=lambda p, n=m.name: log(f"== trained {n}"))
    with executor.batch("ray: points"):
        faults = getattr(study, "faults", None)
        persistent = faults is not None and faults.model == "persistent"
        if not persistent:
            _submit_sweeps(study, executor, get_data)
        else:
            _submit_chips(study, executor, get_data)
        if study.bers:
            _submit_fixed_bers(study, executor, get_data()[1])
        if study.attacks.bfa_seeds > 0:
            _submit_attacks(study, executor, get_data()[1], log)
    results = study.out_dir / "results.csv"
    if not persistent and results.exists():  # the workers' devices are known now
        from .sweep import note_mixed_labels, read_rows
        note_mixed_labels(read_rows(results), results)


def _submit_sweeps(study, executor, get_data) -> None:
    from .ber import BerModel
    from .study import sweep_methods
    # inside the batch each sweep only submits its points
    sweep_methods(study, study.out_dir / "results.csv", BerModel.load(study.ber_model),
                  get_data()[1], False, executor)


def _submit_chips(study, executor, get_data) -> None:
    """A persistent study's chips (run_study_chips) as blocks of chips, every method's."""
    from .ber import BerModel
    from .chips import run_study_chips
    from .study import checkpoint_path
    from .sweep import voltage_grid
    grid = voltage_grid(study.voltages.min, study.voltages.max, study.voltages.step)
    run_study_chips(study, grid, study.out_dir / "results.csv", BerModel.load(study.ber_model),
                    get_data, False, checkpoint_path, executor=executor)


def _submit_fixed_bers(study, executor, test) -> None:
    """The serial _run_fixed_bers's points (same settings, seeds and merge) as tasks."""
    from .study import _merge_at_ber, checkpoint_path
    from .sweep import file_sha256, point_seed
    path, mc = study.out_dir / "at_ber.json", study.monte_carlo
    done = read_json(path)
    kw = dict(max_realizations=mc.realizations, ci_target=mc.ci_target)
    for m in study.methods:
        ck = checkpoint_path(study, m)
        sha = file_sha256(ck)
        settings = {"checkpoint_sha256": sha, "realizations": mc.realizations,
                    "ci_target": mc.ci_target, "seed": study.seed}
        entry = done.get(m.name, {})
        if entry.get("settings") != settings:
            entry = {}
        todo = [b for b in study.bers if repr(b) not in entry]

        def finish(b, clean, est, n, name=m.name, settings=settings):
            update_json(path, lambda d: _merge_at_ber(
                d, name, {"settings": settings, repr(b): est.as_dict()}))
        submit_points(executor, str(ck), sha, test, study.device,
                      [(b, b, point_seed(study.seed, b)) for b in todo], kw, finish)


def _submit_attacks(study, executor, test, log) -> None:
    """One task per method x attack seed; a method's attacks.json entry, summarized by
    bfa_nflip exactly as a serial run's, is written when its last seed finishes."""
    from hwsim.models.attacks import bfa_nflip
    from .attack_records import resumable
    from .study import attack_partial, checkpoint_path
    path, a = study.out_dir / "attacks.json", study.attacks
    done = read_json(path)
    settings, kw = a.settings(study.seed), a.kwargs()
    task_device, _ = executor.gpus(study.device)
    ref = executor.put(test)
    for m in study.methods:
        if m.name in done and done[m.name].get("settings") == settings:
            continue
        ck = str(checkpoint_path(study, m))
        partial, kept = attack_partial(study, m.name)
        model, _ = load_checkpoint(ck)
        record = resumable(partial, kept, model, log)  # seeds a killed run finished
        runs = record["done"]  # on_run adds each finished seed to it
        todo = [s for s in range(study.seed, study.seed + a.bfa_seeds) if s not in runs]
        log(f"== BFA on {m.name} ({len(todo)} of {a.bfa_seeds} seeds, Ray tasks)")

        def finish(run, name=m.name, model=model, runs=runs, record=record, partial=partial):
            if run is not None:
                record["on_run"](run)
            if len(runs) < a.bfa_seeds:
                return
            r = bfa_nflip(model, test, seeds=a.bfa_seeds, seed=study.seed,
                          runs=[runs[s] for s in sorted(runs)], **kw)
            update_json(path, lambda d: d.update({name: dict(r, settings=settings)}))
            partial.unlink(missing_ok=True)
        if not todo:
            finish(None)
        for s in todo:
            executor.submit(bfa_seed, _abs(ck), ref, task_device, kw, s, device=study.device,
                            done=finish)
