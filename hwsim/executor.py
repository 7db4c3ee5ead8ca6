"""Where the pieces of a sweep or study run: here, one after another (`--executor serial`, the
default: no executor object at all, nothing of Ray imported), or as Ray tasks
(`--executor ray`) on a local cluster that `ray.init(num_cpus=...)` starts, or on an existing
one (`--address auto|HOST:PORT`).

Scheduling is Ray's: each piece is one `ray.remote(num_cpus=threads, num_gpus=share)` task,
and the driver collects them with `ray.wait` as they finish and hands each result to its
`done` callback, which writes it to the result files (hwsim/remote.py). A task runs torch with
`threads` threads (1 unless told), so N tasks on N cores do not oversubscribe them.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Callable

from hwsim.models.device import check_device_name
from hwsim.models.errors import ConfigError

EXECUTORS = ("serial", "ray")
RAY_HINT = "pip install 'ray==2.60.0' (or `make setup`, which installs it from pyproject.toml)"


def add_executor_args(p) -> None:
    """--executor, --address, --workers, --gpus-per-task (sweep and study)."""
    from .commands.common import number
    p.add_argument("--executor", choices=EXECUTORS, default="serial",
                   help="serial (default): every piece here, one after another; ray: "
                        "trainings, evaluation points and attack seeds as Ray tasks of "
                        "--threads CPUs each (default 1)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="with --executor ray: connect to this running Ray cluster (default: "
                        "start a local one)")
    p.add_argument("--workers", type=number(int, 1), default=None,
                   help="with --executor ray and no --address: CPUs of the local cluster "
                        "(default: all cores)")
    p.add_argument("--gpus-per-task", type=number(float, 0, 1, lo_open=True), default=None,
                   help="with --executor ray and a cuda device: GPU share of each task, e.g. "
                        "0.25 runs four tasks per GPU (default 1)")


def executor_from_args(args, progress: bool = True,
                       device: str | None = None) -> "RayExecutor | None":
    """The executor the flags ask for: None for serial (flags that only Ray reads are an
    error there), else a RayExecutor (not started yet; use it as a context manager) that
    checks on start that the cluster has what `device` (default: args.device) needs."""
    if args.executor != "ray":
        for flag in ("address", "workers", "gpus_per_task"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} needs --executor ray")
        return None
    if args.address and args.workers:
        raise ConfigError("--workers sizes a local Ray cluster; with --address the cluster "
                          "has its own size (give one of them)")
    device = check_device_name(device or getattr(args, "device", None) or "cpu")
    if args.gpus_per_task is not None and device == "cpu":
        raise ConfigError(f"--gpus-per-task {args.gpus_per_task:g}: the tasks run on the CPU "
                          "(device cpu); give --device cuda (or auto) to run them on GPUs")
    return RayExecutor(address=args.address, workers=args.workers,
                       threads=getattr(args, "threads", None) or 1,
                       gpus_per_task=args.gpus_per_task, progress=progress, device=device)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs the ray package, which is not installed: "
                          f"{RAY_HINT}") from None
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT that nothing listens on is one error line now (ray.init would retry for
    minutes). `auto` and ray:// addresses are left to Ray."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not (host and port.isdigit()):
        raise ConfigError(f"--address {address!r}: expected auto or HOST:PORT, e.g. "
                          "10.0.0.5:6379 (what `ray start --head` prints)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"--address {address}: no Ray cluster reachable there ({e}); start "
                          "one with `ray start --head`") from None


def _call(fn: Callable, threads: int, precision: str, *args):
    """What every Ray task runs: `fn(*args)` with `threads` torch threads and the submitting
    process's inference precision."""
    import torch
    from hwsim.models.device import set_inference_precision
    torch.set_num_threads(threads)
    set_inference_precision(precision)
    return fn(*args)


class RayExecutor:
    """Submit tasks with `submit`, collect them with `wait` (or at the end of a `batch()`).
    Used as a context manager: starts (or connects to) the cluster, and shuts a cluster it
    started down again."""

    remote = True

    def __init__(self, address: str | None = None, workers: int | None = None,
                 threads: int = 1, gpus_per_task: float | None = None, progress: bool = False,
                 device: str | None = None):
        self.address, self.workers, self.threads = address, workers, threads
        self.device = device  # checked against the cluster's GPUs on start (None: not)
        self.gpus_per_task, self.progress = gpus_per_task, progress
        self._started = False
        self._pending: dict = {}  # ObjectRef -> done callback
        self._depth = 0
        self._bar = None
        self._puts: dict = {}
        self.completed = 0

    def __enter__(self) -> "RayExecutor":
        ray = import_ray()
        if not ray.is_initialized():
            _check_reachable(self.address)
            kw = dict(address=self.address) if self.address else dict(
                num_cpus=self.workers or os.cpu_count(), include_dashboard=False)
            try:
                ray.init(log_to_driver=False, configure_logging=False, **kw)
            except ConnectionError as e:
                raise ConfigError(f"--address {self.address}: no Ray cluster there ({e}); "
                                  "start one with `ray start --head`") from None
            self._started = True
        self._resources = ray.cluster_resources()
        self._ray = ray
        self._task = ray.remote(_call)
        try:
            self.gpus(self.device or "cpu")  # e.g. cuda on a cluster without GPUs
        except ConfigError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._pending:  # an error: stop what is still running, keep what was written
            for ref in self._pending:
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref)
            self._pending.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False

    def put(self, obj):
        """`obj` in Ray's object store (once per object), shipped to the nodes whose tasks
        take it as an argument."""
        if id(obj) not in self._puts:
            self._puts[id(obj)] = (obj, self._ray.put(obj))  # holding obj keeps its id unique
        return self._puts[id(obj)][1]

    def gpus(self, device: str) -> tuple[str, float]:
        """(device name inside a task, GPUs the task asks Ray for). Ray gives a GPU task its
        share through CUDA_VISIBLE_DEVICES, so cuda:N becomes that task's `cuda`."""
        have = self._resources.get("GPU", 0)
        if device == "cpu" or (device == "auto" and not have):
            if self.gpus_per_task is not None:
                raise ConfigError(f"--gpus-per-task {self.gpus_per_task:g}: the tasks run on "
                                  f"the CPU (device {device}, cluster GPUs: {have:g}); give "
                                  "--device cuda on a cluster with GPUs, or leave it out")
            return "cpu", 0.0
        if not have:
            raise ConfigError(f"device {device!r}: the Ray cluster has no GPU (its resources: "
                              f"{self._resources}); start its nodes on GPU machines or use "
                              "--device cpu")
        return "cuda", self.gpus_per_task or 1.0

    def slots(self) -> float:
        """How many tasks of the executor's `threads` CPUs the cluster runs at once."""
        return self._resources.get("CPU", 0) / self.threads

    def submit(self, fn: Callable, *args, device: str = "cpu", done: Callable | None = None,
               threads: int | None = None) -> None:
        """Run `fn(*args)` as a Ray task (`fn` a module-level function, found by import on the
        worker) with `threads` CPUs/torch threads (default: the executor's) and a GPU share
        when `device` is not the CPU; call `done(result)` here when it finishes. Outside a
        `batch()` this waits for it; inside, the batch's end does."""
        _, num_gpus = self.gpus(device)
        threads = threads or self.threads
        if threads > self._resources.get("CPU", 0):  # Ray would wait for it forever
            raise ConfigError(f"a task of {threads} threads needs that many CPUs; the Ray "
                              f"cluster has {self._resources.get('CPU', 0):g}")
        task = self._task.options(num_gpus=num_gpus, num_cpus=threads)
        from hwsim.models.device import get_inference_precision
        self._pending[task.remote(fn, threads, get_inference_precision(), *args)] = \
            done or (lambda r: None)
        if self._bar is not None:
            self._bar.total += 1
            self._bar.refresh()
        if not self._depth:
            self.wait()

    @property
    def in_batch(self) -> bool:
        """Inside batch(): submitted tasks finish at the batch's end, not at submit."""
        return self._depth > 0

    @contextlib.contextmanager
    def batch(self, desc: str = "ray tasks"):
        """Submit many tasks, then wait for all of them (each `done` runs as it finishes)."""
        if not self._depth and self.progress:
            from tqdm import tqdm
            self._bar = tqdm(total=0, desc=desc, file=sys.stderr)
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
        if not self._depth:
            try:
                self.wait()
            finally:
                if self._bar is not None:
                    self._bar.close()
                    self._bar = None

    def wait(self) -> None:
        """Collect every submitted task, calling its `done` the moment it finishes. A task's
        ConfigError comes back as one ConfigError (other errors as Ray's, with the trace)."""
        ray = self._ray
        while self._pending:
            (ref,), _ = ray.wait(list(self._pending), num_returns=1)
            done = self._pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, ConfigError):
                    raise ConfigError(str(e.cause)) from None
                raise
            done(result)
            self.completed += 1
            if self._bar is not None:
                self._bar.update()
