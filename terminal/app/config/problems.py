"""`ConfigError`, and the schema's complaints turned into one line per problem:
`<key path>: expected <what>, got <TOML type and value>`.

Values of secret fields (and values under unknown keys) are never shown: only their type (and a
string's length). Key names and values from the file are escaped (`json.dumps`, ASCII), so a
configuration cannot put terminal control sequences on the merchant's screen.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from terminal.app.config.fields import PRIVATE, SECRET
from terminal.app.config.schema import ConfigFile, field_for

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
PREVIEW_CHARS = 40


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid. `problems` holds one line per
    problem, each naming the key (or the file); the message is those lines."""

    def __init__(self, *problems: str, source: Path | None = None) -> None:
        self.problems = tuple(problems) or ("the configuration is not valid",)
        self.source = source
        super().__init__("\n".join(self.problems))

    def report(self, prog: str) -> str:
        """One paragraph for a command's standard error."""
        if self.source is None and len(self.problems) == 1:
            return f"{prog}: {self.problems[0]}"
        where = f" {self.source}" if self.source is not None else ""
        lines = [f"{prog}: the configuration{where} is not valid:"]
        lines += [f"  {p}" for p in self.problems]
        lines.append("  (every key is described in config.example.toml)")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the schema walk


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (`X`, `X | None`, `tuple[X, ...]`, `Annotated[X, …]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in models_in(arg)]


def model_at(loc: Sequence[str | int], root: type[BaseModel] = ConfigFile) -> (
        type[BaseModel] | None):
    """The model of the table at `loc` (array indexes skipped), or None when it is not one."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        found = field_for(model, part) if model is not None else None
        if found is None:
            return None
        nested = models_in(found[1].annotation)
        model = nested[0] if nested else None
    return model


def _marked(model: type[BaseModel], marks: tuple[str, ...]) -> Iterator[str]:
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and any(extra.get(m) for m in marks):
            yield info.alias or name
        for nested in models_in(info.annotation):
            yield from _marked(nested, marks)


HIDDEN_KEYS = frozenset(_marked(ConfigFile, (SECRET, PRIVATE)))


# ------------------------------------------------------------------------------ lines


def key_path(loc: Sequence[str | int]) -> str:
    """("issuers", 0, "p_param") -> "issuers[0].p_param"; odd keys are quoted and escaped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            shown = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += f".{shown}" if out else shown
    return out or "the configuration"


def describe(value: Any, *, hidden: bool = False) -> str:
    """A value as TOML calls it, with a short preview unless `hidden`."""
    if isinstance(value, bool):
        return "a boolean" if hidden else f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        kind = "an integer" if isinstance(value, int) else "a float"
        shown = repr(value)
        if len(shown) > PREVIEW_CHARS:
            shown = shown[:PREVIEW_CHARS] + "…"
        return kind if hidden else f"{kind} ({shown})"
    if isinstance(value, str):
        if hidden:
            return f"a string of {len(value)} characters"
        preview = json.dumps(value[:PREVIEW_CHARS])
        return f"a string ({preview}{'…' if len(value) > PREVIEW_CHARS else ''})"
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return "a date/time"
    return f"a {type(value).__name__}"


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    model = model_at(loc[:-1])
    if model is None:
        return "unknown key"
    known = [info.alias or name for name, info in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    return "unknown key (known here: " + ", ".join(known) + ")"


def problem_line(error: Any) -> str:
    """One pydantic error dict -> `key path: what is wrong`."""
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    hidden = any(isinstance(p, str) and p in HIDDEN_KEYS for p in loc)
    if kind == "rule":
        key = str(ctx.get("key") or "")
        path = key_path(loc)
        if key:
            path = key if path == "the configuration" else f"{path}.{key}"
        return f"{path}: {ctx['message']}"
    path = key_path(loc)
    if kind == "missing":
        return f"{path}: missing (required)"
    if kind == "extra_forbidden":
        return f"{path}: {_unknown_key(loc)}"
    if kind == "expected":
        expected = ctx["expected"]
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        expected = "a table"
    else:  # a check of pydantic's own: its words
        expected = str(error.get("msg", "a valid value")).removeprefix("Input should be ")
    return f"{path}: expected {expected}, got {describe(value, hidden=hidden)}"


def problem_lines(error: ValidationError) -> list[str]:
    lines = [problem_line(e) for e in error.errors(include_url=False)]
    return list(dict.fromkeys(lines))  # a union can report the same problem twice
