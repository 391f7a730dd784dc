"""Cost-model parameters: named constants of a chip (energies, latencies, areas), presets, parameter files.

Every figure of the cost model is a count times one of these constants, so every constant carries its
source (``sources``; "derived:" when computed from published figures, "inferred:" when not published).
Files are read by the one configuration loader (:func:`anacompile.config.load_config`): YAML or JSON, a
``base`` preset, any field overridden; errors name the file and the field.

Presets:

* ``ibm64core``: IBM's 64-core PCM chip, Le Gallo et al., "A 64-core mixed-signal in-memory compute chip
  based on phase-change memory for deep neural network inference", Nat. Electron. 6, 680-693 (2023),
  doi:10.1038/s41928-023-01010-1: 64 cores of 256 x 256 unit cells, 14 nm; 8-bit MVMs in the four-phase
  (high-precision) read mode at 16.1 TOPS and 2.48 TOPS/W (chip level). The chip-level efficiency includes
  the converters, so this preset lumps DAC and ADC energy into the tile MVM energy (their counts are still
  reported).
* ``isaac``: the component-level model of ISAAC (Shafiee et al., ISCA 2016, doi:10.1109/ISCA.2016.12,
  Table 2, 32 nm), the per-component style of NeuroSim: 128 x 128 crossbars, 8-bit ADCs at 1.28 GS/s
  (2 mW each), 1-bit DACs, bit-serial inputs (8 cycles of 100 ns for 8-bit inputs).

Digital operations use Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm): fp16 add 0.4 pJ, fp16
multiply 1.1 pJ. The digital baseline is Google's TPU v1 (Jouppi et al., ISCA 2017,
doi:10.1145/3079856.3080246): 92 TOPS int8 peak (46e12 MAC/s) at 40 W busy power.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from anacompile.config import load_config
from anacompile.errors import ConfigError

__all__ = ["PRESETS", "CostParameters", "available", "get"]

_POSITIVE = (
    "tile_rows",
    "tile_cols",
    "pairs_per_cell",
    "input_cycles",
    "mvm_latency_s",
    "digital_ops_per_s",
    "digital_macs_per_s",
    "baseline_mac_energy_j",
)


@dataclass(frozen=True)
class CostParameters:
    """The named constants of the cost model (SI units: J, s, mm²).

    Attributes:
        name: preset or file name.
        tile_rows: rows of the reference tile the energies are given for.
        tile_cols: columns of the reference tile.
        pairs_per_cell: differential pairs one unit cell holds (more pairs per weight take more tiles).
        input_cycles: cycles per input vector (1: one multi-bit pulse; 8: bit-serial 8-bit inputs), each
            with its DAC and ADC conversions.
        mvm_energy_j: energy of one MVM on one reference tile (array, and whatever the source lumps in), J;
            scaled by the used tile's rows x cols over the reference's.
        dac_energy_j: energy of one DAC conversion (one input row, one cycle), J.
        adc_energy_j: energy of one ADC conversion (one column, one cycle), J.
        mvm_latency_s: time of one MVM on a tile (all input cycles), s.
        tile_area_mm2: area of one tile with its converters, mm².
        digital_add_energy_j: one digital addition (partial sums, bias), J.
        digital_mul_energy_j: one digital multiplication (scales, input scaling), J.
        digital_mac_energy_j: one digital MAC of a layer run digitally on the chip, J.
        digital_ops_per_s: throughput of the chip's digital units for additions/multiplications, op/s.
        digital_macs_per_s: throughput of the chip's digital units for MACs, MAC/s.
        digital_area_mm2: area of the digital units and the rest of the chip (added once), mm².
        baseline_mac_energy_j: energy per MAC of the digital baseline accelerator, J.
        baseline_name: the baseline accelerator.
        citation: where the constants come from.
        sources: field -> source ("derived: ...", "inferred: ..." where not published).
    """

    name: str = "custom"
    tile_rows: int = 256
    tile_cols: int = 256
    pairs_per_cell: int = 1
    input_cycles: int = 1
    mvm_energy_j: float = 0.0
    dac_energy_j: float = 0.0
    adc_energy_j: float = 0.0
    mvm_latency_s: float = 1e-7
    tile_area_mm2: float = 0.0
    digital_add_energy_j: float = 0.0
    digital_mul_energy_j: float = 0.0
    digital_mac_energy_j: float = 0.0
    digital_ops_per_s: float = 1e11
    digital_macs_per_s: float = 1e11
    digital_area_mm2: float = 0.0
    baseline_mac_energy_j: float = 1e-12
    baseline_name: str = ""
    citation: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate every field: one-line ConfigError naming it.

        Raises:
            ConfigError: a value of the wrong type, not finite, negative, or zero where it must be positive.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "baseline_name", "citation"):
                if not isinstance(value, str):
                    raise ConfigError(f"cost parameter {f.name} = {value!r} is invalid; allowed: a string.")
                continue
            if f.name == "sources":
                if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
                    raise ConfigError(f"cost parameter sources = {value!r} is invalid; allowed: field -> text.")
                object.__setattr__(self, "sources", dict(value))
                continue
            integer = f.type == "int"
            ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type:
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"cost parameter {f.name} = {value!r} is invalid; allowed: {kind}.")
            number = float(value)
            positive = f.name in _POSITIVE
            if not math.isfinite(number) or number < 0 or (positive and number == 0):
                bound = "> 0" if positive else ">= 0"
                raise ConfigError(
                    f"cost parameter {f.name} = {value!r} is out of range; allowed: a finite number {bound}."
                )
            if not integer:
                object.__setattr__(self, f.name, number)

    def to_dict(self) -> dict[str, Any]:
        """Every constant as plain JSON values."""
        d = dataclasses.asdict(self)
        d["sources"] = dict(self.sources)
        return d

    def source(self, name: str) -> str:
        """The source of constant ``name`` (the preset's citation when no specific source is given)."""
        return self.sources.get(name, self.citation)


_TOPS_8BIT_HP = 16.1e12  # op/s, whole chip, four-phase read mode (Le Gallo et al. 2023)
_TOPS_W_8BIT_HP = 2.48e12  # op/J, idem
_OPS_PER_MVM_256 = 2 * 256 * 256  # one MAC = 2 ops
_HORO = "Horowitz, ISSCC 2014 (45 nm)"

IBM_64CORE = CostParameters(
    name="ibm64core",
    tile_rows=256,
    tile_cols=256,
    pairs_per_cell=2,
    input_cycles=1,
    mvm_energy_j=_OPS_PER_MVM_256 / _TOPS_W_8BIT_HP,  # 52.9 nJ
    dac_energy_j=0.0,
    adc_energy_j=0.0,
    mvm_latency_s=_OPS_PER_MVM_256 / (_TOPS_8BIT_HP / 64),  # 521 ns
    tile_area_mm2=0.634,
    digital_add_energy_j=0.4e-12,
    digital_mul_energy_j=1.1e-12,
    digital_mac_energy_j=1.5e-12,
    digital_ops_per_s=64 * 256 / 521e-9,
    digital_macs_per_s=64 * 256 / 521e-9,
    digital_area_mm2=0.0,
    baseline_mac_energy_j=40.0 / 46e12,  # 0.87 pJ
    baseline_name="Google TPU v1 (int8)",
    citation="Le Gallo et al., Nat. Electron. 6, 680 (2023), doi:10.1038/s41928-023-01010-1",
    sources={
        "tile_rows": "Le Gallo et al. 2023: 256 x 256 unit cells per core",
        "tile_cols": "Le Gallo et al. 2023: 256 x 256 unit cells per core",
        "pairs_per_cell": "Le Gallo et al. 2023: four PCM devices per unit cell (two per sign)",
        "mvm_energy_j": (
            "derived: 2 x 256 x 256 ops / 2.48 TOPS/W (8-bit, four-phase read mode, chip level; includes "
            "the converters and on-chip digital work)"
        ),
        "dac_energy_j": "lumped into mvm_energy_j (chip-level efficiency)",
        "adc_energy_j": "lumped into mvm_energy_j (chip-level efficiency)",
        "mvm_latency_s": "derived: 2 x 256 x 256 ops / (16.1 TOPS / 64 cores), 8-bit four-phase mode",
        "tile_area_mm2": (
            "derived: HERMES core 1.59 TOPS/mm² (Khaddam-Aljameh et al., IEEE JSSC 57, 1027 (2022)) at "
            "1.0 TOPS per core (63.1 TOPS / 64, one-phase mode); inferred: the same core in the 64-core chip"
        ),
        "digital_add_energy_j": f"{_HORO}: fp16 add 0.4 pJ; inferred: used for the chip's digital units",
        "digital_mul_energy_j": f"{_HORO}: fp16 multiply 1.1 pJ; inferred: used for the chip's digital units",
        "digital_mac_energy_j": f"{_HORO}: fp16 multiply + add; inferred: used for the chip's digital units",
        "digital_ops_per_s": "inferred: one digital op per column per MVM time on each of the 64 cores",
        "digital_macs_per_s": "inferred: as digital_ops_per_s",
        "digital_area_mm2": "inferred: 0 (the digital units sit in the core area)",
        "baseline_mac_energy_j": (
            "derived: Jouppi et al., ISCA 2017, TPU v1: 40 W busy / 46e12 MAC/s (92 TOPS int8 peak)"
        ),
    },
)

ISAAC = CostParameters(
    name="isaac",
    tile_rows=128,
    tile_cols=128,
    pairs_per_cell=1,
    input_cycles=8,
    mvm_energy_j=0.3e-3 * 100e-9 * 8,  # 0.3 mW per crossbar, 8 cycles of 100 ns
    dac_energy_j=4e-3 / (8 * 128) * 100e-9,  # 4 mW for 8 x 128 1-bit DACs, per 100 ns cycle
    adc_energy_j=2e-3 / 1.28e9,  # 2 mW at 1.28 GS/s
    mvm_latency_s=8 * 100e-9,
    tile_area_mm2=0.0096 / 8 + 0.00017 / 8 + 0.0002 / 8,
    digital_add_energy_j=0.4e-12,
    digital_mul_energy_j=1.1e-12,
    digital_mac_energy_j=1.5e-12,
    digital_ops_per_s=1.28e9,
    digital_macs_per_s=1.28e9,
    digital_area_mm2=0.0,
    baseline_mac_energy_j=40.0 / 46e12,
    baseline_name="Google TPU v1 (int8)",
    citation="Shafiee et al., ISAAC, ISCA 2016, doi:10.1109/ISCA.2016.12, Table 2 (32 nm)",
    sources={
        "tile_rows": "ISAAC: 128 x 128 memristor crossbars",
        "tile_cols": "ISAAC: 128 x 128 memristor crossbars",
        "pairs_per_cell": "inferred: one differential pair per cell",
        "input_cycles": "ISAAC: 1-bit DACs, inputs streamed bit-serially (8 cycles for 8-bit inputs)",
        "mvm_energy_j": "derived: ISAAC 0.3 mW per crossbar x 8 cycles x 100 ns",
        "dac_energy_j": "derived: ISAAC 4 mW per 8 x 128 1-bit DACs x 100 ns",
        "adc_energy_j": "derived: ISAAC 8-bit ADC 2 mW at 1.28 GS/s",
        "mvm_latency_s": "ISAAC: 100 ns read cycle, 8 cycles",
        "tile_area_mm2": "derived: ISAAC per-crossbar share of ADC (0.0096/8), DAC, array areas",
        "digital_add_energy_j": f"{_HORO}: fp16 add (ISAAC uses shift-and-add units)",
        "digital_mul_energy_j": f"{_HORO}: fp16 multiply",
        "digital_mac_energy_j": f"{_HORO}: fp16 multiply + add",
        "digital_ops_per_s": "inferred: one op per ADC conversion slot (1.28 GS/s)",
        "digital_macs_per_s": "inferred: as digital_ops_per_s",
        "digital_area_mm2": "inferred: 0 (eDRAM, routers and digital units not modelled)",
        "baseline_mac_energy_j": "derived: Jouppi et al., ISCA 2017, TPU v1: 40 W busy / 46e12 MAC/s",
    },
)

PRESETS: dict[str, CostParameters] = {p.name: p for p in (IBM_64CORE, ISAAC)}


def available() -> list[str]:
    """Names of the cost presets."""
    return sorted(PRESETS)


def _merge(base: CostParameters, data: dict[str, Any], source: str) -> CostParameters:
    names = [f.name for f in dataclasses.fields(base)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(names)}.")
    try:
        return dataclasses.replace(base, **data)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err


def get(
    spec: str | os.PathLike[str] | CostParameters = "ibm64core", overrides: dict[str, Any] | list[str] | None = None
) -> CostParameters:
    """A cost preset by name, a parameter file (.yaml/.yml/.json, ``base`` + overrides), or an instance.

    Raises:
        ConfigError: unknown preset, bad file, unknown key, or an invalid value (naming the field).
    """
    return load_config(
        spec,
        what="Cost parameter",
        cls=CostParameters,
        presets=PRESETS,
        merge=_merge,
        default_base="ibm64core",
        overrides=overrides,
    )
