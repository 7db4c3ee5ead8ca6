"""Result files that concurrent writers can neither corrupt nor lose rows of.

Every write goes to a unique temporary sibling (mkstemp), is flushed to disk and renamed over
the target: readers see the old file or the new one, never half of one. Read-modify-write
updates (`update_json`, `hwsim.sweep.merge_rows`, the energy cache) hold `file_lock(path)`
while they re-read the file, merge their change in and write it back, so what another
process wrote meanwhile is kept.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file (mkstemp would give 0600)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive advisory lock for `path`: flock on its sibling `NAME.lock`, which
    stays in place (deleting it would let two writers lock two different files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a unique temporary sibling, fsync it and rename it over `path`
    (atomic on POSIX); the temporary file is removed on any error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), FILE_MODE)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def file_sha256(path) -> str:
    """First 16 hex digits of the file's sha256: names a checkpoint in resumable records."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_json(path: str | os.PathLike) -> dict:
    """A JSON results file, or {} when it does not exist yet (nothing computed so far)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """`data` as indented JSON, written atomically (see write_text_atomic)."""
    write_text_atomic(path, json.dumps(data, indent=1))


def read_partial(path: str | os.PathLike, settings: dict, key: str,
                 parse: Callable[[dict], dict], log=None, what: str = "results") -> dict:
    """Records finished so far by a long command, from its partial file `path` ({"settings":
    ..., key: {name: record}}): `parse(records)` of them when the file was written with the
    same `settings` (JSON-normalised), else {} (and a line to `log` saying why). A file that
    is not such a file, or whose records `parse` rejects (ValueError, TypeError, KeyError,
    AttributeError), is started over, never trusted."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        rec = json.loads(path.read_text())
        if rec["settings"] != json.loads(json.dumps(settings)):
            done, reason = {}, "written with other settings; starting again"
        else:
            done = parse(rec[key])
            reason = f"{len(done)} {what} reused"
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        done, reason = {}, f"not a partial {what} file; starting again"
    if log:
        log(f"{path}: {reason}")
    return done


def write_partial(path: str | os.PathLike, settings: dict, key: str, records: dict) -> None:
    """Write the partial file read_partial reads (atomically)."""
    write_json_atomic(path, {"settings": settings, key: records})


def update_json(path: str | os.PathLike, change: Callable[[dict], None]) -> dict:
    """Lock `path`, re-read it, apply `change` (which edits the dict in place) and write it
    back atomically; returns the merged contents. Entries other writers added are kept."""
    with file_lock(path):
        data = read_json(path)
        change(data)
        write_json_atomic(path, data)
    return data


def read_yaml(path, what: str, hint: str = ""):
    """The safe-YAML contents of the file `path` (a `what` file: 'BER model', 'assignment');
    a missing file or one that is not YAML text is one ConfigError naming it (`hint`, e.g.
    how to write one, is appended to the second)."""
    from hwsim.models.errors import ConfigError
    import yaml
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file {str(p)!r} does not exist (or is a folder)")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{what} file {str(p)!r} is not a YAML text file ({first})"
                          + (f"; {hint}" if hint else "")) from None


def stale_outputs(stamp: str | os.PathLike, version: str, inputs, outputs) -> str | None:
    """Derived files (a study's report, summary, frontier) are rewritten only when their
    inputs changed: returns the content digest of `version` + the `inputs` files when any of
    `outputs` is missing or `stamp` holds another digest (write it to `stamp` after writing
    the outputs), else None. Content, not mtimes, which a fresh clone scrambles."""
    import hashlib
    digest = hashlib.sha256(version.encode() + b"".join(
        Path(p).read_bytes() for p in inputs)).hexdigest()
    stamp = Path(stamp)
    fresh = stamp.is_file() and stamp.read_text().strip() == digest
    return None if fresh and all(Path(p).exists() for p in outputs) else digest
