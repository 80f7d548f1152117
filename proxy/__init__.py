"""subrelay: an OpenAI-compatible proxy to the models you already pay for."""

__version__ = "0.1.0"
