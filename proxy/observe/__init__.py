"""What an operator sees: redaction of every logged or reported value, the request record and
its log line, and Prometheus metrics. Imports nothing else of the proxy, so every layer may use it."""
