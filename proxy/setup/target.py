"""What a client is pointed at: subrelay's address, the key to send, and the models it serves.

Asked of the running subrelay (``GET /v1/models``, and ``?client_version=`` for the Codex catalogue
entries that carry each model's context window), so the written configuration names models that
exist. The key is the client's own (``SUBRELAY_API_KEY``), else the owner's first
``SUBRELAY_API_KEYS`` entry; with keys off any value passes, so a placeholder is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import httpx

from proxy.config.settings import Settings
from proxy.errors import ConfigError

PLACEHOLDER_KEY = "unused"  # subrelay accepts any key while SUBRELAY_API_KEYS is unset
DEFAULT_MODEL = "gpt-5.5"
DEFAULT_SMALL_MODEL = "gpt-5.4-mini"
TIMEOUT = httpx.Timeout(10.0, connect=3.0)


@dataclass
class Target:
    url: str  # the root, without /v1: http://127.0.0.1:8787
    key: str
    key_source: str  # where the key came from, said in messages (never the key)
    models: list[str] = field(default_factory=list)
    catalogue: dict[str, dict[str, Any]] = field(default_factory=dict)  # slug -> Codex catalogue entry
    problem: str | None = None  # why subrelay could not be asked, in words a user acts on
    refused: bool = False  # subrelay answered 401: writing this key would leave a client locked out

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    @property
    def keys_on(self) -> bool:
        return self.key != PLACEHOLDER_KEY

    def context_window(self, model: str) -> int | None:
        entry = self.catalogue.get(model) or {}
        window = entry.get("context_window")
        return window if isinstance(window, int) and window > 0 else None

    def pick(self, wanted: str | None, preferred: str, *, small: bool = False) -> str:
        """The model to write: the one asked for, else the README's choice when served, else one served."""
        if wanted:
            return wanted
        if preferred in self.models or not self.models:
            return preferred
        if small:
            return next((m for m in self.models if "mini" in m), self.models[0])
        return self.models[0]


def default_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def check_url(url: str) -> str:
    """subrelay's root as given to --url (``/v1`` or a trailing slash dropped), or a ConfigError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.path.rstrip("/") not in ("", "/v1"):
        raise ConfigError(f"--url must be subrelay's address, like http://127.0.0.1:8787 (got {url!r})")
    return f"{parts.scheme}://{parts.netloc}"


def resolve_key(settings: Settings, env: Mapping[str, str]) -> tuple[str, str]:
    if env.get("SUBRELAY_API_KEY", "").strip():
        return env["SUBRELAY_API_KEY"].strip(), "SUBRELAY_API_KEY"
    if settings.api_keys:
        return settings.api_keys[0], "the first of SUBRELAY_API_KEYS"
    return PLACEHOLDER_KEY, "none (keys are off)"


def discover(url: str, key: str, key_source: str) -> Target:
    """Ask subrelay for its models; a refusal or silence becomes ``problem``, never an exception."""
    target = Target(url=url.rstrip("/"), key=key, key_source=key_source)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(timeout=TIMEOUT, trust_env=False) as client:
            listed = client.get(f"{target.v1}/models", headers=headers)
            if listed.status_code == 401:
                target.refused = True
                target.problem = (f"subrelay at {target.url} checks keys and refused "
                                  + ("a request without one: run again with SUBRELAY_API_KEY=<your key>"
                                     if not target.keys_on else f"the key from {key_source}"))
                return target
            if listed.status_code != 200:
                target.problem = f"subrelay at {target.url} answered GET /v1/models with HTTP {listed.status_code}"
                return target
            target.models = [m["id"] for m in listed.json().get("data", []) if isinstance(m, dict) and "id" in m]
            catalogue = client.get(f"{target.v1}/models", params={"client_version": "0.0.0"}, headers=headers)
            if catalogue.status_code == 200:
                for entry in catalogue.json().get("models", []):
                    if isinstance(entry, dict) and isinstance(entry.get("slug"), str):
                        target.catalogue[entry["slug"]] = entry
    except httpx.HTTPError as exc:
        target.problem = (f"nothing answers at {target.url} ({type(exc).__name__}): start it with "
                          "`subrelay serve`, or give its address with --url")
    except ValueError:
        target.problem = f"{target.url} answered GET /v1/models with something that is not subrelay's JSON"
    return target
