"""Weight to conductance mapping: programming strategies and their inverse."""

from anacompile.mapping.base import ConductanceMapping, decode_pairs
from anacompile.mapping.column_scaling import column_scales, normalise_columns
from anacompile.mapping.differential_pair import SinglePairMapping

__all__ = ["ConductanceMapping", "SinglePairMapping", "column_scales", "decode_pairs", "normalise_columns"]
