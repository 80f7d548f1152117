"""The credential layer shared by every adapter: sources, secure files, JWT expiry, refresh locks."""

from proxy.credentials.base import Credential, CredentialSource
from proxy.credentials.codex import CodexCredentialSource

__all__ = ["Credential", "CredentialSource", "CodexCredentialSource"]
