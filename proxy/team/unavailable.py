"""The one answer for a team store that does not answer (503 ``state_store_unavailable``), in a module of its
own so the gate, the admission policy and the account surface share it without importing each other."""

from __future__ import annotations

from proxy.errors import ServiceUnavailable


def store_unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"subrelay's state store is not answering ({exc}); try again shortly.",
                              code="state_store_unavailable")
