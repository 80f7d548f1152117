"""The credential layer shared by every adapter: sources, secure files, JWT expiry, refresh locks."""

from .base import Credential, CredentialSource
from .codex import CodexCredentialSource

__all__ = ["Credential", "CredentialSource", "CodexCredentialSource"]
