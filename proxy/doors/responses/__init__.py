"""The Responses door: ``POST /v1/responses`` (and ``/compact``), with the record behind
``previous_response_id``."""
