"""The neutral model in the middle: one request shape every client format decodes into and every
vendor adapter encodes from.

N client formats (Chat Completions, Responses, Anthropic Messages) and M vendors cost N + M codecs,
never N × M translators. The model holds what the formats share and needs to round-trip: system
text, messages with text, images and files, tool calls and their results, reasoning (its summary
*and* the opaque payload needed to replay it), tools and tool choice, and the generation options.
The answer side of the hub is :mod:`proxy.hub.events`.

Codecs build these only from validated input, so adapters may rely on the types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from proxy.errors import BadRequest


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Image:
    url: str  # https URL or a data:image/...;base64 URL
    detail: str | None = None  # auto | low | high


@dataclass(slots=True)
class File:
    data_url: str  # data:<media>;base64,...
    filename: str = "file"


Part = Union[Text, Image, File]


@dataclass(slots=True)
class Message:
    role: str  # user | assistant
    parts: list[Part]


@dataclass(slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it
    where: str = ""  # the client's parameter path, for error messages


@dataclass(slots=True)
class ToolResult:
    call_id: str
    parts: list[Part]  # usually one Text; images where the format allows
    is_error: bool = False
    where: str = ""


@dataclass(slots=True)
class Reasoning:
    """A reasoning step from an earlier answer: its readable summary, and the vendor's opaque
    payload (Codex ``encrypted_content``) that lets the same vendor continue from it."""

    summary: list[str]
    encrypted: str | None = None
    item_id: str | None = None


Item = Union[Message, ToolCall, ToolResult, Reasoning]


@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False


@dataclass(slots=True)
class OutputFormat:
    kind: str  # text | json_object | json_schema
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool = False
    description: str | None = None


@dataclass(slots=True)
class Inbound:
    """The client's request as it came, for same-format upstreams that take it (nearly) unchanged."""

    format: str  # chat | responses | messages (| responses.compact | messages.count_tokens)
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str] = field(default_factory=dict)  # protocol headers a same-format upstream needs


@dataclass(slots=True)
class ModelRequest:
    """One request for a model's answer, independent of any wire format."""

    model: str
    inbound: Inbound
    system: list[str] = field(default_factory=list)  # system and developer texts, in order
    items: list[Item] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: str | None = None  # auto | none | required | None (unset)
    forced_tool: str | None = None  # a named function the model must call
    parallel_tool_calls: bool | None = None
    stream: bool = False
    include_usage: bool = False
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None
    output_format: OutputFormat | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, Any] | None = None
    # What only the client's own format (and a same-format upstream) can carry: (param, what).
    untranslatable: list[tuple[str, str]] = field(default_factory=list)

    def require_translatable(self, vendor: str) -> None:
        """Raise a 400 naming the first thing this request holds that ``vendor`` cannot be sent."""
        if self.untranslatable:
            param, what = self.untranslatable[0]
            raise BadRequest(f"{what[:1].upper() + what[1:]} can only be sent to a model that speaks this API "
                             f"natively (a Codex model), not to {vendor}.", param=param, code="unsupported_value")

    @property
    def body(self) -> dict[str, Any]:
        """The client's JSON body (format-specific; for same-format paths and vendor extras)."""
        return self.inbound.body

    @property
    def raw(self) -> bytes:
        return self.inbound.raw


def text_of_parts(parts: list[Part]) -> str:
    """The plain text of some parts (images and files left out)."""
    return "".join(part.text for part in parts if isinstance(part, Text))
