"""Configuration, read once at start-up from the environment, flags and ``subrelay.toml`` into one
typed :class:`~proxy.config.settings.Settings` that is passed down. Nothing else reads ``os.environ``."""
