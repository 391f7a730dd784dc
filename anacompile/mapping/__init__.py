"""Weight to conductance mapping: programming strategies and their inverse."""

from anacompile.mapping.base import ConductanceMapping, decode_pairs
from anacompile.mapping.column_scaling import column_scales, normalise_columns
from anacompile.mapping.differential_pair import SinglePairMapping
from anacompile.mapping.multi_pair import DUAL_DEFAULT_F, NPairMapping, dual_pair
from anacompile.mapping.piecewise import PIECEWISE_SCHEMA_VERSION, PiecewiseMapping
from anacompile.mapping.registry import STRATEGY_NAMES, get_mapping, mapping_from_dict

__all__ = [
    "DUAL_DEFAULT_F",
    "PIECEWISE_SCHEMA_VERSION",
    "STRATEGY_NAMES",
    "ConductanceMapping",
    "NPairMapping",
    "PiecewiseMapping",
    "SinglePairMapping",
    "column_scales",
    "decode_pairs",
    "dual_pair",
    "get_mapping",
    "mapping_from_dict",
    "normalise_columns",
]
