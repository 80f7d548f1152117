"""The client-facing APIs, one package each: Chat Completions, Responses, Anthropic Messages. A door
owns its endpoint, its request codec (client JSON -> hub request), its answer encoder (hub events ->
client stream or object) and whatever only it needs; doors never import one another."""
