"""Recording what reaches the analog sessions a call makes (monkeypatched ``AnalogSession.__init__``)."""

from __future__ import annotations

from anacompile.runtime.session import AnalogSession


def record_session_providers(monkeypatch) -> list:
    """A list that gets the ``providers=`` of every AnalogSession made from now on (None where not given)."""
    seen: list = []
    init = AnalogSession.__init__

    def recording(self, *args, **kwargs):
        seen.append(kwargs.get("providers"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(AnalogSession, "__init__", recording)
    return seen
