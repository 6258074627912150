"""The analysis settings of a fit (``Settings``), from the config's analysis section or a
--settings argument; the window and P range are checked by ``config.check_analysis_ranges``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .config import check_analysis_ranges

ESTIMATORS = ("ours", "authors")
CENSORED = ("exclude", "include")


@dataclass
class Settings:
    """One fit's settings; ``from_dict`` parses and checks an analysis section (untrusted input)."""
    x_left: float | None          # None (with x_right None) = window: auto, resolved on the data
    x_right: float | None
    P_min: float | None
    P_max: float | None
    min_seeds: int
    n_boot: int
    seed: int
    level: float
    estimator: str = "ours"       # the primary estimator: "ours" or "authors"
    also: tuple = ()              # further estimators reported beside it ("both")
    gamma1_P_min: float | None = None
    censored: str = "exclude"     # seeds with a censored minimum: "exclude" or "include" (CENSORED)

    @property
    def auto(self) -> bool:
        return self.x_right is None

    @classmethod
    def from_dict(cls, s: dict) -> "Settings":
        def need(d, key, where):
            if d.get(key) is None:
                raise ValueError(f"analysis settings lack {where}{key!r}")
            return d[key]

        window = need(s, "window", "")
        boot = s.get("bootstrap") or {}
        estimator = s.get("estimator") or "ours"
        if estimator not in (*ESTIMATORS, "both"):
            raise ValueError(f"estimator must be one of {[*ESTIMATORS, 'both']}, got {estimator!r}")
        censored = s.get("censored") or "exclude"
        if censored not in CENSORED:
            raise ValueError(f"analysis setting 'censored' must be one of {list(CENSORED)}, "
                             f"got {censored!r}")
        if window == "auto":
            x_left = x_right = None
        elif isinstance(window, dict):
            # x_left 0 or null: no lower bound (the authors' "> 0")
            x_left = float(window.get("x_left") or 0.0)
            x_right = float(need(window, "x_right", "window."))
        else:
            raise ValueError(f"window must be {{x_left, x_right}} or 'auto', got {window!r}")
        out = cls(x_left=x_left, x_right=x_right,
                  P_min=s.get("P_min"), P_max=s.get("P_max"),
                  min_seeds=int(need(s, "min_seeds", "")),
                  n_boot=int(need(boot, "n", "bootstrap.")), seed=int(need(boot, "seed", "bootstrap.")),
                  level=float(boot.get("level", 0.95)),
                  estimator="ours" if estimator == "both" else estimator,
                  also=("authors",) if estimator == "both" else (),
                  gamma1_P_min=s.get("gamma1_P_min"), censored=censored)
        check_analysis_ranges(out.x_left, out.x_right, out.P_min, out.P_max)
        if out.min_seeds < 1:
            raise ValueError(f"min_seeds must be >= 1, got {out.min_seeds}")
        if out.n_boot < 0:
            raise ValueError(f"bootstrap.n must be >= 0, got {out.n_boot}")
        if not 0 < out.level < 1:
            raise ValueError(f"bootstrap.level must be in (0, 1), got {out.level}")
        return out

    def with_(self, **kw) -> "Settings":
        return replace(self, **kw)

    def in_range(self, P: np.ndarray) -> np.ndarray:
        ok = np.ones(len(P), dtype=bool)
        if self.P_min is not None:
            ok &= P >= self.P_min
        if self.P_max is not None:
            ok &= P <= self.P_max
        return ok

    def in_gamma1(self, P: np.ndarray) -> np.ndarray:
        return np.ones(len(P), dtype=bool) if self.gamma1_P_min is None else P >= self.gamma1_P_min

    def as_dict(self) -> dict:
        return {"window": "auto" if self.auto else {"x_left": self.x_left, "x_right": self.x_right},
                "P_min": self.P_min, "P_max": self.P_max, "gamma1_P_min": self.gamma1_P_min,
                "min_seeds": self.min_seeds, "estimator": "both" if self.also else self.estimator,
                "censored": self.censored,
                "bootstrap": {"n": self.n_boot, "seed": self.seed, "level": self.level}}
