"""What an adapter receives to sign a request, and the interface every credential source offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True, frozen=True)
class Credential:
    """A usable secret for one upstream, plus the facts about it that requests need.

    ``repr`` hides the secret so a credential can never leak through a log of its object.
    """

    access_token: str
    account_id: str | None = None
    plan_type: str | None = None
    expires_at: float | None = None

    def __repr__(self) -> str:
        return f"Credential(account_id={self.account_id!r}, plan_type={self.plan_type!r}, expires_at={self.expires_at!r})"


class CredentialSource(Protocol):
    """Where one upstream's credential comes from (a login file, an env key, …)."""

    name: str

    async def current(self) -> Credential:
        """A credential valid right now, refreshing first if it is about to expire."""

    async def refresh(self, *, stale: Credential | None = None) -> Credential:
        """Force a refresh because ``stale`` was refused; a no-op if someone already rotated it."""
