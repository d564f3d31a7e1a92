"""Reading the Dockerfile, so that tests run what it says rather than a copy of it."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    arguments: str  # the rest of the (joined) line


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self, inherited: dict[str, str]) -> dict[str, str]:
        """The stage's ENV, expanded the way Docker expands `$VAR` in ENV values."""
        values = dict(inherited)
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.arguments):
                key, _, value = pair.partition("=")
                values[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ""),
                                     value)
        return values

    def exec_form(self, keyword: str) -> list[str]:
        (instruction,) = self.all(keyword)
        parsed = json.loads(instruction.arguments)
        assert isinstance(parsed, list), f"{keyword} must use the exec (JSON) form"
        return [str(p) for p in parsed]

    def last(self, keyword: str) -> str:
        return self.all(keyword)[-1].arguments.strip()


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path) -> list[Stage]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.strip().partition("=")
            args[name] = default
            continue
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
            continue
        stages[-1].instructions.append(Instruction(keyword, rest.strip()))
    return stages
