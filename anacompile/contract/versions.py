"""The version of domain ``ai.anacompile`` and the check that a model can be read by this anacompile.

Every change of an op's signature or semantics bumps :data:`DOMAIN_VERSION` and adds the first anacompile
release that writes it to :data:`DOMAIN_VERSIONS`.
"""

from __future__ import annotations

from anacompile._version import __version__
from anacompile.contract.names import DOMAIN, META_VERSION
from anacompile.errors import UnsupportedModelError

__all__ = ["DOMAIN_VERSION", "DOMAIN_VERSIONS", "check_domain_version"]

DOMAIN_VERSION = 2
"""The version of domain ``ai.anacompile`` this anacompile writes and reads (and every older one).

Version 2 (``compile --chip-state``): a file may carry no chip (``chip_state: none`` in the report): no
``AnalogChipWeights`` nodes, ``L.w_eff`` and ``L.scale`` are graph inputs fed by the session. The ops'
signatures and semantics are those of version 1, and a version-1 file (always a full chip) reads as before;
a version-1 reader refuses every version-2 file, naming the release it needs."""

DOMAIN_VERSIONS = {1: "0.1.0", 2: "0.2.0"}
"""Domain version -> the first anacompile release that writes it (0.2.0: the next release, unreleased)."""


def check_domain_version(opset_imports: dict[str, int], metadata: dict[str, str] | None = None) -> None:
    """Refuse a model whose ``ai.anacompile`` opset is newer than this anacompile reads.

    Args:
        opset_imports: the model's opset imports, domain -> version.
        metadata: the model's metadata properties (the writer's version, ``anacompile.version``).

    Raises:
        UnsupportedModelError: naming the anacompile version that is needed.
    """
    version = opset_imports.get(DOMAIN)
    if version is None or version <= DOMAIN_VERSION:
        return
    writer = (metadata or {}).get(META_VERSION)
    needed = f"anacompile >= {writer}" if writer else f"an anacompile that reads {DOMAIN} version {version}"
    raise UnsupportedModelError(
        f"The model uses {DOMAIN} version {version}; this anacompile ({__version__}) reads up to version "
        f"{DOMAIN_VERSION}: install {needed} (pip install -U anacompile)."
    )
