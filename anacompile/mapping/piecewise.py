"""Piecewise-linear strategy tables G+-_p(u): the output format of the weight-programming optimiser.

Mackin et al. 2022 (Nat. Commun. 13, 3765) describe a programming strategy as four "translation functions"
G+(W), G-(W), g+(W), g-(W) together with F and a hardware weight scale; aihwkit's
``CustomPairConductanceConverter`` [V-code] stores them as lookup tables on 2 nbins - 1 weight points and
interpolates linearly in between (reference/papers.md, (a) and "Differential pairs and significance").

Here the tables are indexed by the normalised weight u = W / gamma in [-1, 1] (the compiler's per-column
scale gamma, :mod:`anacompile.mapping.column_scaling`) at increasing points u_0 = -1 < ... < u_{K-1} = 1,
which need not be equally spaced (the optimiser places them at quantiles of the weight density):

    G+-_p(u) = interp(u, u_k, table+-_p[k])        (|u| > 1 clips to the end points)
    u_hw     = sum_p F_p (G+_p - G-_p) / gain_us

The tables are in µS for the conductance window (g_min_us, g_max_us) they were made for; a call with another
window rescales them affinely, G' = g_min' + (G - g_min) (g_max' - g_min') / (g_max - g_min), and the gain by
the same ratio, so the represented u is unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from anacompile.config import read_config_file
from anacompile.errors import ConfigError, OutputError

__all__ = ["PIECEWISE_SCHEMA_VERSION", "PiecewiseMapping"]

PIECEWISE_SCHEMA_VERSION = 1
"""Version of the strategy JSON of :meth:`PiecewiseMapping.to_dict`; bump when a field changes meaning."""

_BOUND_SLACK_US = 1e-9


@dataclass(frozen=True, eq=False)
class PiecewiseMapping:
    """Strategy given by piecewise-linear conductance tables of P differential pairs.

    Attributes:
        significance_factors: F_p, least significant pair first.
        u_points: K strictly increasing normalised weights from -1 to 1.
        tables_us: target conductances, shape (P, 2, K), µS (axis 1: 0 = G+, 1 = G-).
        gain: µS of sum_p F_p (G+_p - G-_p) that represents u = 1 (the hardware weight scale k_w).
        g_min_us: lower end of the conductance window the tables were made for, µS.
        g_max_us: upper end of that window, µS.
        device: name of the device model the strategy was optimised for ("" if none).
        info: free-form JSON-serialisable provenance (optimiser settings, errors); not used to encode.
        name: ``"piecewise"``.
    """

    significance_factors: tuple[float, ...]
    u_points: NDArray[np.float64]
    tables_us: NDArray[np.float64]
    gain: float
    g_min_us: float
    g_max_us: float
    device: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    name: str = "piecewise"

    def __post_init__(self) -> None:
        f = tuple(float(x) for x in self.significance_factors)
        u = np.array(self.u_points, dtype=np.float64)
        tab = np.array(self.tables_us, dtype=np.float64)
        u.setflags(write=False)
        tab.setflags(write=False)
        object.__setattr__(self, "significance_factors", f)
        object.__setattr__(self, "u_points", u)
        object.__setattr__(self, "tables_us", tab)
        object.__setattr__(self, "gain", float(self.gain))
        object.__setattr__(self, "g_min_us", float(self.g_min_us))
        object.__setattr__(self, "g_max_us", float(self.g_max_us))
        if not f or not all(np.isfinite(x) and x > 0.0 for x in f):
            raise ConfigError(f"PiecewiseMapping.significance_factors: need >= 1 finite F_p > 0, got {f}.")
        if u.ndim != 1 or u.size < 2:
            raise ConfigError(f"PiecewiseMapping.u_points: need a 1-D list of >= 2 points, got shape {u.shape}.")
        if not (np.all(np.isfinite(u)) and np.all(np.diff(u) > 0.0)):
            raise ConfigError("PiecewiseMapping.u_points: points must be finite and strictly increasing.")
        if abs(u[0] + 1.0) > 1e-9 or abs(u[-1] - 1.0) > 1e-9:
            raise ConfigError(f"PiecewiseMapping.u_points: must run from -1 to 1, got {u[0]} ... {u[-1]}.")
        if tab.shape != (len(f), 2, u.size):
            raise ConfigError(
                f"PiecewiseMapping.tables_us: expected shape (P, 2, K) = ({len(f)}, 2, {u.size}), got {tab.shape}."
            )
        if not (self.g_max_us > self.g_min_us and np.isfinite(self.g_max_us) and np.isfinite(self.g_min_us)):
            raise ConfigError(f"PiecewiseMapping: need g_min_us < g_max_us, got {self.g_min_us}, {self.g_max_us}.")
        if not np.all(np.isfinite(tab)):
            raise ConfigError("PiecewiseMapping.tables_us: every conductance must be finite.")
        lo, hi = float(tab.min()), float(tab.max())
        if lo < self.g_min_us - _BOUND_SLACK_US or hi > self.g_max_us + _BOUND_SLACK_US:
            raise ConfigError(
                f"PiecewiseMapping.tables_us: conductances span [{lo:.6g}, {hi:.6g}] µS, outside the window "
                f"[{self.g_min_us}, {self.g_max_us}] µS."
            )
        if not (np.isfinite(self.gain) and self.gain > 0.0):
            raise ConfigError(f"PiecewiseMapping.gain: must be finite and > 0 µS, got {self.gain}.")
        if self.name != "piecewise":
            raise ConfigError(f"PiecewiseMapping.name: must be 'piecewise', got {self.name!r}.")

    @property
    def significance(self) -> tuple[float, ...]:
        """Significance factor F_p of each pair, least significant first."""
        return self.significance_factors

    @property
    def n_pairs(self) -> int:
        """Number of differential pairs P."""
        return len(self.significance_factors)

    def _ratio(self, g_min_us: float, g_max_us: float) -> float:
        window = float(g_max_us - g_min_us)
        if not window > 0.0:
            raise ConfigError(f"PiecewiseMapping: need g_max_us > g_min_us, got {g_min_us}, {g_max_us}.")
        return window / (self.g_max_us - self.g_min_us)

    def gain_us(self, g_min_us: float, g_max_us: float) -> float:
        """µS per unit u, rescaled from the table's window to (g_min_us, g_max_us)."""
        return self.gain * self._ratio(g_min_us, g_max_us)

    def encode(self, u: ArrayLike, g_min_us: float, g_max_us: float) -> NDArray[np.float64]:
        """Target conductances (µS), shape ``(P, 2) + u.shape``, by linear interpolation of the tables."""
        u = np.asarray(u, dtype=np.float64)
        r = self._ratio(g_min_us, g_max_us)
        flat = u.reshape(-1)
        g = np.empty((self.n_pairs, 2, flat.size))
        for p in range(self.n_pairs):
            for s in range(2):
                g[p, s] = np.interp(flat, self.u_points, self.tables_us[p, s])
        g = g_min_us + (g - self.g_min_us) * r
        return np.clip(g, g_min_us, g_max_us).reshape((self.n_pairs, 2) + u.shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form with ``schema_version`` (what :meth:`save` writes)."""
        return {
            "schema_version": PIECEWISE_SCHEMA_VERSION,
            "name": self.name,
            "device": self.device,
            "significance": list(self.significance_factors),
            "gain_us": self.gain,
            "g_min_us": self.g_min_us,
            "g_max_us": self.g_max_us,
            "u_points": self.u_points.tolist(),
            "tables_us": self.tables_us.tolist(),
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PiecewiseMapping:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            ConfigError: wrong ``name`` or ``schema_version``, missing or malformed fields.
        """
        if not isinstance(d, dict) or d.get("name") != "piecewise":
            raise ConfigError('Not a piecewise strategy: expected a JSON object with "name": "piecewise".')
        version = d.get("schema_version")
        if version != PIECEWISE_SCHEMA_VERSION:
            raise ConfigError(
                f"Piecewise strategy schema_version {version!r} is not supported by this anacompile "
                f"(supports {PIECEWISE_SCHEMA_VERSION}); re-run 'anacompile optimize'."
            )
        try:
            return cls(
                significance_factors=tuple(d["significance"]),
                u_points=np.asarray(d["u_points"], dtype=np.float64),
                tables_us=np.asarray(d["tables_us"], dtype=np.float64),
                gain=d["gain_us"],
                g_min_us=d["g_min_us"],
                g_max_us=d["g_max_us"],
                device=str(d.get("device", "")),
                info=dict(d.get("info", {})),
            )
        except KeyError as err:
            raise ConfigError(f"Piecewise strategy: missing field {err.args[0]!r}.") from err
        except (TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"Piecewise strategy: malformed field ({err}).") from err

    def save(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        """Write the strategy JSON atomically (temporary file in the target folder, then ``os.replace``).

        Raises:
            OutputError: the file exists and ``force`` is false, or the folder does not exist.
        """
        path = Path(path)
        if path.exists() and not force:
            raise OutputError(f"{path} exists; pass force=True (--force) to overwrite it.")
        if not path.parent.is_dir():
            raise OutputError(f"Cannot write {path}: folder {path.parent} does not exist.")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=1)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PiecewiseMapping:
        """Read a strategy JSON written by :meth:`save`.

        Raises:
            ConfigError: the file is missing, not JSON, or not a valid piecewise strategy.
        """
        d = read_config_file(path, "Strategy file", suffixes=(".json",), schema_version=None)
        return cls.from_dict(d)
