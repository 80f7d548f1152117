"""Opening one upstream answer: routing a model name to routes, fallbacks and cooldowns, the shared
HTTP client, the auth retry, and the live model catalogues."""
