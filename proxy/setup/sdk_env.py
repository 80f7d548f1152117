"""The OpenAI and Anthropic SDKs: the environment variables they read at construction.

The SDKs have no configuration file, so nothing is written: ``setup openai-sdk`` prints the
``export`` lines (``eval "$(subrelay setup openai-sdk --print)"`` applies them to the shell) and
checks them with the real Python SDK, if installed, and a request that costs nothing: the model
list for OpenAI (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``), ``count_tokens`` for Anthropic
(``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from proxy.setup import probe
from proxy.setup.backups import FileChange
from proxy.setup.options import Options
from proxy.setup.target import DEFAULT_MODEL, Target

OPENAI_CHECK = """
import json, openai
client = openai.OpenAI(max_retries=0, timeout=20)
print(json.dumps(sorted(m.id for m in client.models.list())))
"""
ANTHROPIC_CHECK = """
import json, sys, anthropic
client = anthropic.Anthropic(max_retries=0, timeout=20)
counted = client.messages.count_tokens(model=sys.argv[1], messages=[{"role": "user", "content": "hi"}])
print(json.dumps(counted.input_tokens))
"""


@dataclass(frozen=True)
class SdkEnv:
    NAME: str
    package: str
    script: str

    def variables(self, target: Target, options: Options) -> dict[str, str]:
        if self.package == "openai":
            return {"OPENAI_BASE_URL": target.v1, "OPENAI_API_KEY": target.key}
        return {"ANTHROPIC_BASE_URL": target.url, "ANTHROPIC_API_KEY": target.key}

    def paths(self, env: Mapping[str, str]) -> list[Path]:
        return []  # nothing is written, so there is nothing to undo

    def plan(self, target: Target, options: Options, env: Mapping[str, str]) -> list[FileChange]:
        return []

    def snippet(self, target: Target, options: Options, env: Mapping[str, str]) -> str:
        pairs = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.variables(target, options).items())
        return f"export {pairs}\n"

    @property
    def NOTES(self) -> tuple[str, ...]:
        return (f"(nothing written: the {self.package} SDK reads these variables; "
                f"eval \"$(subrelay setup {self.NAME} --print)\" sets them in this shell)",)

    def check(self, target: Target, options: Options, env: Mapping[str, str]) -> probe.CheckResult:
        child = {**env, **self.variables(target, options)}
        argv = [sys.executable, "-c", self.script, target.pick(options.model, DEFAULT_MODEL)]
        ran = probe.run(argv, child, timeout=60)
        if isinstance(ran, str):
            return probe.CheckResult.failed(ran)
        if "ModuleNotFoundError" in ran.stderr:
            return probe.CheckResult.failed(f"the {self.package} package is not installed for {sys.executable}: "
                                            "the variables are right for it, but it could not be run")
        if ran.returncode != 0:
            return probe.CheckResult.failed(f"the {self.package} SDK failed against {target.url}:\n    "
                                            + probe.tail(ran.stderr, 3))
        answer = json.loads(ran.stdout.strip().splitlines()[-1])
        if self.package == "openai":
            return probe.CheckResult(True, [f"openai SDK: models.list() through {target.v1} lists {len(answer)} models"])
        return probe.CheckResult(True, [f"anthropic SDK: messages.count_tokens() through {target.url} counted {answer} tokens"])


OPENAI = SdkEnv("openai-sdk", "openai", OPENAI_CHECK)
ANTHROPIC = SdkEnv("anthropic-sdk", "anthropic", ANTHROPIC_CHECK)
