"""A log line is one line whatever a client puts in its request (issue 17, finding 10)."""

from __future__ import annotations

import logging
import time

import httpx

from proxy.observe.metrics import RequestRecord
from proxy.observe.redact import get_logger


def test_a_newline_in_a_path_cannot_forge_a_request_log_line(caplog):
    caplog.set_level(logging.INFO)
    record = RequestRecord.start({"method": "GET", "path": "/v1/x\nrequest\tstatus=200\rmodel=forged"}, None)
    record.status = 404
    record.finish()
    lines = [r.getMessage() for r in caplog.records if r.name == "subrelay.requests"]
    assert len(lines) == 1 and not any(c in lines[0] for c in "\n\r\t") and "\\n" in lines[0]


def test_control_characters_are_escaped_in_every_logged_value(caplog):
    caplog.set_level(logging.INFO)
    get_logger("subrelay.test").info("unknown model %r from %s", "gpt\r\nINFO forged", "a\x1b[31mred")
    message = caplog.records[-1].getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message


def test_a_percent_encoded_newline_reaches_no_log_raw(proxy_url, caplog):
    caplog.set_level(logging.INFO)
    httpx.get(proxy_url.rsplit("/v1", 1)[0] + "/v1/models%0aINFO:forged-line")
    deadline = time.monotonic() + 5  # the request's line is written just after its answer was sent
    # subrelay's own lines only: httpx logs the URL it sent too, which would end the wait before ours came
    while "forged-line" not in (text := "\n".join(r.getMessage() for r in caplog.records
                                                  if r.name.startswith("subrelay"))):
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    assert "\nINFO:forged-line" not in text and "\\nINFO:forged-line" in text


def test_the_logged_cost_uses_the_deployments_own_prices(caplog):
    """subrelay.toml's [prices] price the log line and the ledger as they price budgets (they were priced with
    the shipped table alone, so a provider priced only in subrelay.toml logged no cost)."""
    import tomllib

    from proxy.config.file import parse_config
    from proxy.config.settings import Settings
    from proxy.hub.events import Usage
    from proxy.server.app import create_app

    config = parse_config(tomllib.loads('[prices."bench/*"]\ninput = 2\noutput = 10\n[providers.bench]\nkind = "custom"\n'
                                        'base_url = "http://127.0.0.1:9/v1"\napi_key = "sk-bench"\n'))
    create_app(Settings(file=config, codex_auth_path="/nonexistent/auth.json"))
    record = RequestRecord("r1", "POST", "/v1/chat/completions")
    record.routed("bench/m", "bench/m", "bench", True, "m")
    record.status, record.usage = 200, Usage(1_000_000, 100_000, 1_100_000)
    with caplog.at_level(logging.INFO, logger="subrelay.requests"):
        record.finish()
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("request ")][-1]
    assert line.endswith(" cost=3.0"), line  # 1M input tokens at $2 + 100k output at $10 per million
