"""Post-install fix-ups run by `make` (idempotent, seconds when nothing is wrong).

hwcomponents-cacti ships a CACTI binary linked against glibc 2.38; on Debian 12 (glibc 2.36)
it fails with "GLIBC_2.38 not found". The package also ships CACTI's C++ source, so we
rebuild the binary in place (`make opt`, ~15 s) whenever the shipped one does not run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cacti_dir() -> Path:
    import hwcomponents_cacti
    return Path(hwcomponents_cacti.__file__).parent / "cacti"


def cacti_runs(folder: Path) -> tuple[bool, str]:
    exe = folder / "cacti"
    if not exe.exists():
        return False, "binary missing"
    try:
        r = subprocess.run([str(exe)], cwd=folder, capture_output=True, text=True, timeout=60)
    except OSError as e:
        return False, str(e)
    out = r.stdout + r.stderr
    # with no arguments a working CACTI prints its usage and exits 0
    return ("how to use CACTI" in out and "GLIBC" not in out), out.strip()[:300]


def ensure_cacti() -> None:
    folder = cacti_dir()
    ok, why = cacti_runs(folder)
    if ok:
        print(f"CACTI ok: {folder / 'cacti'}")
        return
    print(f"CACTI does not run ({why}); rebuilding from source with `make opt` in {folder}")
    r = subprocess.run(["make", "opt", f"-j{max(1, len(os.sched_getaffinity(0)))}"],
                       cwd=folder, capture_output=True, text=True)
    if r.returncode != 0:  # compiler chatter is shown only when the build fails
        sys.exit(f"CACTI rebuild failed (make opt in {folder}):\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    ok, why = cacti_runs(folder)
    if not ok:
        sys.exit(f"CACTI rebuild failed: {why}")
    print(f"CACTI rebuilt: {folder / 'cacti'}")


if __name__ == "__main__":
    ensure_cacti()
