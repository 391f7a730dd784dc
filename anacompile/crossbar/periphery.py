"""Crossbar tile and periphery parameters: one validated, documented configuration.

Defaults are the standard AIMC crossbar model of Rasch et al. 2023 (Nat. Commun. 14, 5282; aihwkit
``StandardHWATrainingPreset``; reference/papers.md, section (c) and "Standard AIMC forward pass for one
tile"): 512 x 512 tiles, 8-bit DAC over [-1, 1] (step 2/254), 8-bit ADC with bound 10 (step 20/254),
PCM short-term read noise sigma_w = 0.0175, output noise 0.04, IR drop scale 1 with
g_wire/g_max = 5.714e5, per-column digital output scales and global drift compensation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from anacompile import config
from anacompile.errors import ConfigError

__all__ = [
    "PERIPHERY_PRESETS",
    "BoundManagement",
    "Compensation",
    "OutputRange",
    "DriftCompensation",
    "InputRange",
    "Periphery",
    "get_periphery",
    "parse_overrides",
]

SCHEMA_VERSION = 1


class InputRange(str, Enum):
    """How the DAC's input range alpha_in is chosen."""

    STATIC = "static"
    """One range per tile, calibrated at compile time from data (Rasch et al. 2023, learned/static)."""
    ABSMAX = "absmax"
    """alpha_in = max_j |x_j| of every input vector (aihwkit ``NoiseManagementType.ABS_MAX``)."""


class BoundManagement(str, Enum):
    """What the periphery does when an output saturates the ADC."""

    NONE = "none"
    """Saturated outputs stay clipped (Rasch et al. 2023 standard model)."""
    ITERATIVE = "iterative"
    """Halve the input vector's scale and recompute while any of its outputs saturates, up to
    ``bm_max_halvings`` times (aihwkit ``BoundManagementType.ITERATIVE``)."""


class DriftCompensation(str, Enum):
    """Drift compensation applied digitally to each analog layer's output."""

    NONE = "none"
    GLOBAL = "global"
    """One factor per layer: ratio of summed |column currents| of a calibration read at programming and
    at t (Joshi et al. 2020; Le Gallo et al. 2018; reference/papers.md, "Drift compensation")."""
    COLUMN = "column"
    """One factor per column: the same ratio, column by column (aihwkit ``PerColumnDriftCompensation``)."""


class OutputRange(str, Enum):
    """How the ADC's range (the tile's output gain before the ADC) is set."""

    FIXED = "fixed"
    """The fixed bound ``adc_bound`` in units of full-scale input x max weight (Rasch et al. 2023)."""
    CALIBRATED = "calibrated"
    """Per tile, from the distribution of the tile's outputs on calibration data, as a chip is calibrated:
    a gain g = bound / P makes the ``output_range_percentile`` P of |tile output| (ideal weights, the
    calibration data's DAC codes) meet the ADC bound. The gain acts before the ADC, so the output noise
    (``out_noise``, half an ADC step, ADC-referred) stays in ADC units; the digital scale divides it out.
    Statistic: onnxruntime's ``CalibrationMethod.Percentile`` convention (symmetric, |x|, 99.999)."""


class Compensation(str, Enum):
    """Drift compensation of an evaluation: a :class:`DriftCompensation`, or ``adabs``.

    ``adabs`` is global drift compensation plus re-estimating every BatchNormalization's statistics on
    calibration data at each time (adaptive batch-norm statistics; reference/papers.md). Being a ``str``
    enum, ``Compensation.ADABS == "adabs"``, so strings keep working wherever a member is accepted.
    """

    NONE = "none"
    GLOBAL = "global"
    COLUMN = "column"
    ADABS = "adabs"

    @property
    def drift(self) -> DriftCompensation:
        """The drift compensation the analog layers apply (``adabs`` -> ``global``)."""
        return DriftCompensation.GLOBAL if self is Compensation.ADABS else DriftCompensation(self.value)

    @classmethod
    def parse(cls, value: str | Compensation) -> Compensation:
        """``"adabs"`` -> ``Compensation.ADABS``; raises :class:`ConfigError` naming the allowed values."""
        try:
            return cls(value)
        except ValueError as err:
            raise ConfigError(f"Compensation {value!r}: use one of {', '.join(m.value for m in cls)}.") from err


@dataclass(frozen=True)
class Periphery:
    """Tile size and every element of the analog tile's forward pass, each switchable.

    Attributes:
        tile_rows: rows (inputs) of one crossbar tile; larger matrices give digitally added partial sums.
        tile_cols: columns (outputs) of one tile (bookkeeping: columns are independent in this model).
        input_range: ``static`` (calibrated per tile at compile time) or ``absmax`` (per input vector).
        input_range_percentile: percentile of |x| over the calibration data that sets a static range.
        output_range: ``fixed`` (the ADC bound ``adc_bound``) or ``calibrated`` (a per-tile gain before the
            ADC from calibration data, :class:`OutputRange`).
        output_range_percentile: percentile of |tile output| that a calibrated range maps to the ADC bound.
        dac_bits: DAC resolution; ``None`` = no DAC (no clipping, no quantisation). 8 bits = 254 steps.
        dac_bound: the DAC clips scaled inputs to +-dac_bound.
        adc_bits: ADC resolution; ``None`` = no quantisation. 8 bits = 254 steps over [-bound, bound].
        adc_bound: ADC saturation bound in units of full-scale input x max weight; ``None`` = no clipping.
        read_noise: sigma_w of the PCM short-term read noise, output-referred:
            y_i += sigma_w sqrt(sum_j |w_ij| x_j^2) xi_i (aihwkit ``PCM_READ``, w_noise = 0.0175).
        out_noise: std of the additive Gaussian output noise (0.04 = half an ADC LSB).
        ir_drop: scale gamma_IR of the IR-drop model (0 = off).
        ir_drop_g_ratio: g_wire / g_max of the IR-drop model, 1 / (0.35 Ohm * 5 uS) = 5.714e5.
        drift_compensation: ``none``, ``global`` or ``column``.
        bound_management: ``none`` or ``iterative`` (needs the DAC on and an ADC bound).
        bm_max_halvings: most input halvings of iterative bound management; 5 leaves an 8-bit DAC 127/32 ~ 4
            levels, aihwkit's resolution limit ``max_bm_res = 0.25`` [I: aihwkit default].
        noise_bank_size: length of the bank of standard normals that per-MVM noise is drawn from in the
            graph (the analog session grows it to the largest batch it sees).
    """

    tile_rows: int = 512
    tile_cols: int = 512
    input_range: InputRange = InputRange.STATIC
    input_range_percentile: float = 100.0
    output_range: OutputRange = OutputRange.FIXED
    output_range_percentile: float = 99.999
    dac_bits: int | None = 8
    dac_bound: float = 1.0
    adc_bits: int | None = 8
    adc_bound: float | None = 10.0
    read_noise: float = 0.0175
    out_noise: float = 0.04
    ir_drop: float = 1.0
    ir_drop_g_ratio: float = 1.0 / (0.35 * 5e-6)  # = 5.714e5, aihwkit IOParameters
    drift_compensation: DriftCompensation = DriftCompensation.GLOBAL
    bound_management: BoundManagement = BoundManagement.NONE
    bm_max_halvings: int = 5
    noise_bank_size: int = 1 << 16
    schema_version: int = field(default=SCHEMA_VERSION, repr=False)

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION or isinstance(self.schema_version, bool):
            raise ConfigError(
                f"Periphery schema_version {self.schema_version!r} is not supported; this anacompile "
                f"reads schema_version {SCHEMA_VERSION}."
            )
        object.__setattr__(self, "input_range", _enum(InputRange, self.input_range, "input_range"))
        object.__setattr__(
            self, "drift_compensation", _enum(DriftCompensation, self.drift_compensation, "drift_compensation")
        )
        object.__setattr__(self, "bound_management", _enum(BoundManagement, self.bound_management, "bound_management"))
        object.__setattr__(self, "output_range", _enum(OutputRange, self.output_range, "output_range"))
        if not 0 < self.output_range_percentile <= 100:
            raise ConfigError(
                f"Periphery output_range_percentile={self.output_range_percentile!r}: must be in (0, 100]."
            )
        if (
            not isinstance(self.bm_max_halvings, int)
            or isinstance(self.bm_max_halvings, bool)
            or not 1 <= self.bm_max_halvings <= 16
        ):
            raise ConfigError(f"Periphery bm_max_halvings={self.bm_max_halvings!r}: must be an integer in [1, 16].")
        if self.bound_management is BoundManagement.ITERATIVE and (self.dac_bits is None or self.adc_bound is None):
            raise ConfigError(
                "Periphery bound_management=iterative needs the DAC on (dac_bits) and an ADC bound "
                "(adc_bound): it halves DAC inputs while outputs hit the ADC bound."
            )
        limits = {"tile_rows": MAX_TILE, "tile_cols": MAX_TILE, "noise_bank_size": MAX_NOISE_BANK}
        for name, most in limits.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= most:
                raise ConfigError(f"Periphery {name}={v!r}: must be an integer in [1, {most}].")
        for name in ("dac_bits", "adc_bits"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 2 <= v <= 24):
                raise ConfigError(f"Periphery {name}={v!r}: must be an integer in [2, 24], or null for none.")
        for name in ("read_noise", "out_noise", "ir_drop"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"Periphery {name}={getattr(self, name)!r}: must be a finite number >= 0.")
        if not _finite(self.dac_bound) or not self.dac_bound > 0:
            raise ConfigError(f"Periphery dac_bound={self.dac_bound!r}: must be a finite number > 0.")
        if self.adc_bound is not None and (not _finite(self.adc_bound) or not self.adc_bound > 0):
            raise ConfigError(
                f"Periphery adc_bound={self.adc_bound!r}: must be a finite number > 0, or null for none (no clipping)."
            )
        if not _finite(self.ir_drop_g_ratio) or not self.ir_drop_g_ratio > 0:
            raise ConfigError(f"Periphery ir_drop_g_ratio={self.ir_drop_g_ratio!r}: must be a finite number > 0.")
        if not _finite(self.input_range_percentile) or not 0 < self.input_range_percentile <= 100:
            raise ConfigError(f"Periphery input_range_percentile={self.input_range_percentile!r}: must be in (0, 100].")

    @property
    def dac_step(self) -> float | None:
        """DAC step: bound / (2^(bits-1) - 1); 2/254 for 8 bits over [-1, 1]."""
        return None if self.dac_bits is None else self.dac_bound / (2 ** (self.dac_bits - 1) - 1)

    @property
    def adc_step(self) -> float | None:
        """ADC step: 2 bound / (2^bits - 2); 20/254 for 8 bits and bound 10."""
        if self.adc_bits is None:
            return None
        bound = 10.0 if self.adc_bound is None else self.adc_bound
        return 2.0 * bound / float(2**self.adc_bits - 2)

    @property
    def bm_passes(self) -> int:
        """MVMs per input vector: 1, or 1 + bm_max_halvings with iterative bound management."""
        return 1 + self.bm_max_halvings if self.bound_management is BoundManagement.ITERATIVE else 1

    @property
    def has_mvm_noise(self) -> bool:
        """Whether any per-MVM Gaussian noise (read or output) is on."""
        return self.read_noise > 0 or self.out_noise > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (enums as strings)."""
        d = dataclasses.asdict(self)
        d["input_range"] = self.input_range.value
        d["drift_compensation"] = self.drift_compensation.value
        d["bound_management"] = self.bound_management.value
        d["output_range"] = self.output_range.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "periphery config") -> Periphery:
        """Build from a dict; unknown keys raise :class:`ConfigError` naming them and the allowed keys."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError(f"{source}: unknown periphery key(s) {unknown}; allowed: {sorted(allowed)}.")
        try:
            return cls(**d)
        except TypeError as err:
            raise ConfigError(f"{source}: {err}") from err

    def replace(self, **overrides: Any) -> Periphery:
        """Return a validated copy with some fields replaced."""
        return Periphery.from_dict({**self.to_dict(), **overrides})


MAX_TILE = 1 << 16
"""Largest tile side (rows or columns) a periphery may declare."""
MAX_NOISE_BANK = 1 << 30
"""Largest noise bank (standard normals) a periphery may declare."""


def _finite(v: Any) -> bool:
    """A real number (not a bool, a string, NaN or infinite)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _enum(cls: type[Enum], value: Any, name: str) -> Any:
    try:
        return cls(value)
    except ValueError as err:
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"Periphery {name}={value!r}: must be one of {allowed}.") from err


PERIPHERY_PRESETS: dict[str, Periphery] = {
    "standard": Periphery(),
    "calibrated": Periphery(output_range=OutputRange.CALIBRATED),
    "ideal": Periphery(
        dac_bits=None,
        adc_bits=None,
        adc_bound=None,
        read_noise=0.0,
        out_noise=0.0,
        ir_drop=0.0,
        input_range=InputRange.ABSMAX,
        drift_compensation=DriftCompensation.NONE,
    ),
}
"""Named presets: ``standard`` = Rasch et al. 2023 (fixed ADC bound, paper-exact); ``calibrated`` = the same
periphery with each tile's ADC range calibrated from data (the compiler's default: an FP32-trained model does
not saturate; without calibration data it falls back to the fixed bound, noted in the report); ``ideal`` = no
noise, no quantisation, no IR drop."""


def parse_overrides(overrides: dict[str, Any] | list[str] | None, what: str = "Periphery override") -> dict[str, Any]:
    """Periphery overrides as a dict: ``["adc_bits=6", "adc_bound=none"]`` -> ``{"adc_bits": 6, "adc_bound": None}``.

    Values are read as YAML 1.2 scalars (:func:`anacompile.config.parse_scalar`): ``1e-7`` is a float. Every
    key and value is checked on its own (on the standard periphery) and all together, so an unknown key or a
    bad value fails here, before any model is read, in one line naming it and the valid keys or values
    (``what`` names the option, e.g. ``--set``); checks that depend on the periphery the overrides apply to
    (a compiled file's tile size) stay where that periphery is known. A dict is checked, not re-parsed.

    Raises:
        ConfigError: an item is not KEY=VALUE, a key is not a periphery key, or a value is invalid.
    """
    parsed = config.parse_overrides(overrides, what=what)
    base = PERIPHERY_PRESETS["standard"].to_dict()
    for key, value in parsed.items():
        if key not in base:
            raise ConfigError(f"{what} {key!r}: not a periphery key; valid keys: {', '.join(sorted(base))}.")
        try:
            Periphery.from_dict({**base, key: value})
        except ConfigError as err:
            raise ConfigError(f"{what} {key}: {err}") from err
    if len(parsed) > 1:
        try:
            Periphery.from_dict({**base, **parsed})
        except ConfigError as err:
            raise ConfigError(f"{what} {', '.join(parsed)} together: {err}") from err
    return parsed


def _merge(base: Periphery, overrides: dict[str, Any], source: str) -> Periphery:
    return Periphery.from_dict({**base.to_dict(), **overrides}, source=source)


def get_periphery(
    spec: str | os.PathLike[str] | Periphery = "standard", overrides: dict[str, Any] | list[str] | None = None
) -> Periphery:
    """Return a preset (``standard``, ``ideal``) or a YAML/JSON file's periphery, with per-key overrides.

    Files are read by :func:`anacompile.config.load_config` (YAML 1.2 numbers, ``schema_version`` checked).

    Args:
        spec: preset name, path to a .yaml/.yml/.json file (``{"base": "standard", "adc_bits": 6}``), or a
            :class:`Periphery`.
        overrides: ``{"adc_bits": 6}`` or CLI strings ``["adc_bits=6", "out_noise=0"]``.
    """
    return config.load_config(
        spec,
        what="Periphery",
        cls=Periphery,
        presets=PERIPHERY_PRESETS,
        merge=_merge,
        default_base="standard",
        overrides=overrides,
        schema_version=SCHEMA_VERSION,
    )
