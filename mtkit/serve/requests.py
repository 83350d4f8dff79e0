"""What a request to `mtkit serve` may say: the one place its fields are checked.

The pydantic models here hold every check a request can be given without looking at the served
runs: types (strict: "5" is not a beam), the server's limits (`ServeConfig`), text that is not text
(a lone UTF-16 surrogate) or is empty. The web app's routes take them as their body or query, and
`Service.translate` / `Service.examples` build them from their arguments, so a Python caller meets
the same checks and messages as the web page. What needs the runs (a run's name, its beam, layers
and heads, the attention weights an answer would hold) is the service's to check.

A refused request raises `RequestError`, which names the field at fault and the HTTP status.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from mtkit.config import ServeConfig
from mtkit.errors import MtkitError

LIMITS = ServeConfig()  # the defaults, for the schema's descriptions
SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair: JSON's \ud800 decodes to one, UTF-8 cannot hold it
TOO_LONG = "text_too_long"  # the error type answered with 413 rather than 422


class RequestError(MtkitError):
    """A request the service cannot answer: names the field at fault and the HTTP status to answer with."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


class TranslateRequest(BaseModel):
    """A sentence to translate with some or all of the served runs."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "En el principio crió Dios los cielos y la tierra.", "beam": 5, "n_best": 1}]})
    limits: ClassVar[ServeConfig] = LIMITS  # `for_limits` makes the model of one server's limits

    text: StrictStr = Field(description=f"One source sentence (line breaks count as spaces; at most "
                                        f"{LIMITS.max_text_chars:,} characters by default; longer than the run's "
                                        "decode.max_src_len pieces is truncated, and the result says so).")
    runs: Optional[list[StrictStr]] = Field(None, description="Names of runs to use (GET /api/runs); default all.")
    beam: Optional[StrictInt] = Field(None, description=f"Beam size, 1 (greedy) to the server's max_beam "
                                                        f"({LIMITS.max_beam} by default); default: each run's "
                                                        "decode.beam.")
    n_best: StrictInt = Field(1, description="Hypotheses to return per run, 1 to the beam size, and at most "
                                             "max_weights attention weights a run (GET /api/runs).")
    layer: Optional[StrictInt] = Field(None, description="Transformer runs only: show the cross-attention of this "
                                                         "decoder layer, 1 to its layers (GET /api/runs); default: "
                                                         "the mean of all layers.")
    head: Optional[StrictInt] = Field(None, description="Transformer runs only: show this attention head, 1 to its "
                                                        "heads; default: the mean of all heads.")

    @classmethod
    def for_limits(cls, limits: ServeConfig) -> type["TranslateRequest"]:
        """Return the request model that checks against `limits` (a server's own)."""
        return type(cls.__name__, (cls,), {"limits": limits, "__module__": cls.__module__})

    @field_validator("text")
    @classmethod
    def _sentence(cls, text: str) -> str:
        """Return the text as one line of single spaces: at most max_text_chars, all of it Unicode, not empty."""
        if len(text) > cls.limits.max_text_chars:
            raise PydanticCustomError(TOO_LONG, "{n} characters; this server takes at most {limit} (longer sources "
                                                "are truncated anyway)",
                                      {"n": f"{len(text):,}", "limit": f"{cls.limits.max_text_chars:,}"})
        bad = SURROGATE.search(text)
        if bad:
            raise PydanticCustomError("surrogate", "character {at} is U+{code}, half of a UTF-16 surrogate pair with "
                                                   "no other half, which is not text; send valid Unicode (escape a "
                                                   "character beyond U+FFFF as both halves, \\ud83d\\ude00)",
                                      {"at": bad.start() + 1, "code": f"{ord(bad.group()):04X}"})
        sentence = " ".join(text.split())
        if not sentence:
            raise PydanticCustomError("empty", "empty (or only whitespace); give a sentence to translate")
        return sentence

    @field_validator("runs")
    @classmethod
    def _some_runs(cls, runs: list[str] | None) -> list[str] | None:
        if runs is not None and not runs:
            raise PydanticCustomError("empty", "empty; leave it out for all runs or name some (GET /api/runs)")
        return runs

    @field_validator("beam", "n_best", "layer", "head")
    @classmethod
    def _at_least_1(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value < 1:
            raise PydanticCustomError("too_small", "got {value}; must be at least 1", {"value": value})
        if info.field_name == "beam" and value is not None and value > cls.limits.max_beam:
            raise PydanticCustomError("too_large", "got {value}; this server allows at most {limit} (each step "
                                                   "scores beam × vocabulary hypotheses)",
                                      {"value": value, "limit": cls.limits.max_beam})
        return value


class ExamplesQuery(BaseModel):
    """Which test sentences to show: a length bucket (all when none) and a page of it."""

    limits: ClassVar[ServeConfig] = LIMITS

    bucket: Optional[str] = Field(None, description="A bucket label from /api/runs; none: all.")
    offset: int = Field(0, description="Skip this many sentences of the bucket.")
    count: int = Field(5, description=f"Sentences to return, 1 to max_examples ({LIMITS.max_examples} by default).")
    outputs: bool = Field(True, description="Also each run's output, as `mtkit eval` cached it.")

    @classmethod
    def for_limits(cls, limits: ServeConfig) -> type["ExamplesQuery"]:
        """Return the query model that checks against `limits` (a server's own)."""
        return type(cls.__name__, (cls,), {"limits": limits, "__module__": cls.__module__})

    @field_validator("offset")
    @classmethod
    def _not_negative(cls, offset: int) -> int:
        if offset < 0:
            raise PydanticCustomError("too_small", "got {value}; must be at least 0", {"value": offset})
        return offset

    @field_validator("count")
    @classmethod
    def _a_page(cls, count: int) -> int:
        if not 1 <= count <= cls.limits.max_examples:
            raise PydanticCustomError("out_of_range", "got {value}; give 1 to {limit}",
                                      {"value": count, "limit": cls.limits.max_examples})
        return count


def request_error(errors: list[dict[str, Any]]) -> RequestError:
    """Return the RequestError of pydantic's first complaint about a request: its field, message and status."""
    first = errors[0]
    field = _field(first)
    if first.get("type") == "json_invalid":
        return RequestError(field, "body: not valid JSON")
    return RequestError(field, f"{field}: {first['msg']}", status=413 if first.get("type") == TOO_LONG else 422)


def _field(error: dict[str, Any]) -> str:
    """Return the request field a pydantic error is about: "beam", "text", or "body" for the body as a whole."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
    if error.get("type") == "json_invalid" or not loc or loc[0].isdigit():
        return "body"
    return loc[0]
