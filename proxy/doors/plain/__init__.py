"""The plain OpenAI endpoints: ``/v1/embeddings``, ``/v1/moderations``, ``/v1/audio/transcriptions`` and
``/v1/images/generations``, relayed to API-key providers that have them (docs/endpoints.md)."""
