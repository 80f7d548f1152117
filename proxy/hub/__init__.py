"""The hub every door and every vendor adapter meets at: the neutral request (:mod:`.model`), the
neutral answer events (:mod:`.events`), the one SSE codec, the client-JSON checks every request codec
uses, and what every door shares to stream or aggregate an answer."""
