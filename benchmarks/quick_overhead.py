"""A first, small measurement of subrelay's added latency over a direct call (loopback mocks only).

Sequential requests (concurrency 1), interleaved direct/proxy so machine drift cancels; prints
median and p99 per path. Not the full benchmark suite of the benchmarks issue (no LiteLLM, no
concurrency sweep, no RSS): a quick sanity figure. Run: .venv/bin/python -m benchmarks.quick_overhead
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import httpx

from proxy.app import create_app
from proxy.config import Settings
from proxy.config_file import FileConfig, ProviderConfig
from tests.conftest import write_auth_file
from tests.mock_upstream import MockCodexServer, ServerThread
from tests.mock_upstream.openai_server import MockOpenAIServer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    codex, openai_mock = MockCodexServer(), MockOpenAIServer()
    codex.state.record = openai_mock.state.record = False
    with ServerThread(codex) as codex_thread, ServerThread(openai_mock) as openai_thread:
        auth = os.path.join(tempfile.mkdtemp(), "auth.json")
        write_auth_file(auth, codex.state.auth_file(expires_in=7200))
        settings = Settings(
            codex_base_url=f"{codex_thread.url}/backend-api/codex", codex_auth_path=auth,
            file=FileConfig(providers=(ProviderConfig("local", "custom", base_url=f"{openai_thread.url}/v1", api_key=openai_mock.state.api_key),)),
            env={})
        with ServerThread(create_app(settings)) as proxy_thread, httpx.Client(timeout=10) as client:
            key = {"Authorization": f"Bearer {openai_mock.state.api_key}"}
            chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            cases = {
                "direct openai-compatible (non-stream)": (f"{openai_thread.url}/v1/chat/completions", chat, key),
                "subrelay passthrough (non-stream)": (f"{proxy_thread.url}/v1/chat/completions", {**chat, "model": "local/m"}, key),
                "subrelay codex translation (non-stream)": (f"{proxy_thread.url}/v1/chat/completions", {**chat, "model": "gpt-5.4"}, {}),
            }
            timings: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.requests):
                for name, (url, body, headers) in cases.items():
                    started = time.perf_counter()
                    response = client.post(url, json=body, headers=headers)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
    base = statistics.median(timings["direct openai-compatible (non-stream)"])
    print(f"{args.requests} sequential requests per path, interleaved; milliseconds")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:42s} p50 {median:6.2f}  p99 {percentile(values, 0.99):6.2f}  added p50 {median - base:+6.2f}")


if __name__ == "__main__":
    main()
