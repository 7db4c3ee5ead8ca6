"""Supply voltage -> SRAM bit error rate (paper eq. 11) and its inverse.

eps(V) = min(exp(a + b V + c V^2), 0.5); defaults a = 22.12, b = -68.14, c = 0 are the
paper's regression on the 22nm FDX SRAM measurements of Di Mauro et al. 2020. Users fit their
own measurements with `hwsim ber fit FILE.csv`, which writes a YAML that `--ber-model` reads.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

from hwsim.models.errors import ConfigError

from .files import read_yaml, write_text_atomic

SATURATION = 0.5  # a bit that is pure noise flips with probability 1/2


@dataclass(frozen=True)
class BerModel:
    a: float = 22.12
    b: float = -68.14
    c: float = 0.0
    source: str = "Chitsaz et al. 2024, eq. 11 (Di Mauro et al. 2020 SRAM, GF 22nm FDX)"

    def ber(self, voltage: float) -> float:
        v = check_voltage(voltage)
        x = self.a + self.b * v + self.c * v * v
        return SATURATION if x >= math.log(SATURATION) else math.exp(x)

    def bers(self, voltages) -> np.ndarray:
        return np.array([self.ber(v) for v in voltages])

    def voltage(self, ber: float) -> float:
        """The voltage at which eps(V) = ber, on the decreasing branch of the model
        (for ber = 0.5, the highest voltage that still saturates)."""
        if not (isinstance(ber, (int, float)) and 0 < ber <= SATURATION):
            raise ConfigError(f"bit error rate {ber!r}: must be in (0, 0.5] "
                              "(0 is only reached as V -> infinity)")
        y = math.log(ber) - self.a  # solve c V^2 + b V - y = 0
        if abs(self.c) < 1e-15:
            if self.b >= 0:
                raise ConfigError("BER model has b >= 0: the BER does not fall with voltage")
            return y / self.b
        disc = self.b ** 2 + 4 * self.c * y
        if disc < 0:
            raise ConfigError(f"BER model never reaches {ber:g}")
        roots = [(-self.b + s * math.sqrt(disc)) / (2 * self.c) for s in (1, -1)]
        # the decreasing branch: derivative b + 2cV < 0
        good = [r for r in roots if self.b + 2 * self.c * r < 0 and r > 0]
        if not good:
            raise ConfigError(f"BER model has no positive voltage with BER {ber:g}")
        return min(good)

    @classmethod
    def load(cls, path: str | os.PathLike | None) -> "BerModel":
        if path is None:
            return cls()
        p = Path(path)
        data = read_yaml(p, "BER model", "write one with `hwsim ber fit FILE.csv`")
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping with keys a, b, c")
        extra = set(data) - {"a", "b", "c", "source", "fit"}
        if extra:
            raise ConfigError(f"{p}: unknown key(s) {sorted(extra)}; valid: a, b, c, source, fit")
        vals = {}
        for k in ("a", "b", "c"):
            v = data.get(k, 0.0 if k == "c" else None)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"{p}: field {k!r} must be a number, got {v!r}")
            vals[k] = float(v)
        return cls(**vals, source=str(data.get("source", p.name)))

    def save(self, path: str | os.PathLike, fit: dict | None = None) -> None:
        d = asdict(self)
        if fit:
            d["fit"] = fit
        write_text_atomic(path, yaml.safe_dump(d, sort_keys=False))


V_FLOOR = 0.2  # below this no SRAM holds data; eq. 11 saturates long before
V_NOMINAL = 0.8  # the shipped arch's nominal supply; arch files set their own
V_HEADROOM = 1.25  # supplies above 1.25 x nominal are outside any model here


def check_voltage(v, what: str = "voltage", v_nominal: float | None = V_NOMINAL) -> float:
    """The one validation of a supply voltage used everywhere: a finite number of volts in
    [0.2 V, 1.25 x v_nominal] (v_nominal None: only > 0, for nominal voltages themselves)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{what} {v!r}: must be a positive number of volts")
    if v_nominal is not None:
        hi = V_HEADROOM * v_nominal
        if not V_FLOOR <= v <= hi + 1e-12:
            raise ConfigError(f"{what} {v!r}: outside the supported supply range "
                              f"[{V_FLOOR:g}, {hi:g}] V (0.2 V to 1.25 x the nominal "
                              f"{v_nominal:g} V)")
    return float(v)


def fit_ber(voltages, bers, quadratic: bool = True) -> tuple[BerModel, dict]:
    """Least squares on log(ber) for points below saturation (points at/above 0.5 carry no
    information about the exponential branch and would bend the fit)."""
    from scipy.optimize import least_squares
    v, e = np.asarray(voltages, float), np.asarray(bers, float)
    if len(v) != len(e):
        raise ConfigError("voltage and ber columns differ in length")
    if np.any(e <= 0):
        raise ConfigError("ber values must be > 0 (log-space fit); drop zero-error points")
    keep = e < SATURATION
    n_params = 3 if quadratic else 2
    if keep.sum() < n_params + 1:
        raise ConfigError(f"need at least {n_params + 1} points with 0 < ber < 0.5 to fit, "
                          f"got {int(keep.sum())}")
    v, y = v[keep], np.log(e[keep])

    def resid(theta):
        c = theta[2] if quadratic else 0.0
        return theta[0] + theta[1] * v + c * v * v - y

    x0 = np.polyfit(v, y, 1)[::-1]
    sol = least_squares(resid, np.r_[x0, 0.0] if quadratic else x0)
    r = sol.fun
    ss_tot = float(((y - y.mean()) ** 2).sum())
    stats = {"points_used": int(keep.sum()), "points_saturated": int((~keep).sum()),
             "rmse_log": float(np.sqrt((r ** 2).mean())),
             "r2_log": float(1 - (r ** 2).sum() / ss_tot) if ss_tot > 0 else 1.0}
    a, b = float(sol.x[0]), float(sol.x[1])
    c = float(sol.x[2]) if quadratic else 0.0
    return BerModel(a, b, c, source="fit"), stats


def read_ber_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{str(p)!r} does not exist")
    try:
        df = pd.read_csv(p)
    except Exception as e:
        raise ConfigError(f"{p}: not a readable CSV ({e})") from None
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in ("voltage", "ber") if c not in cols]
    if missing:
        raise ConfigError(f"{p}: missing column(s) {missing}; found {list(df.columns)} "
                          "(need columns: voltage, ber)")
    try:
        return (df[cols["voltage"]].astype(float).to_numpy(),
                df[cols["ber"]].astype(float).to_numpy())
    except ValueError as e:
        raise ConfigError(f"{p}: non-numeric value ({e})") from None
