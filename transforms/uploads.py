"""What the gateway learns of a file upload streaming through it, without keeping it, and the batch
rule that uses it.

``UploadWatch`` is the stream of an upload's body: it passes every byte on unchanged while counting
them against the route's ``max_request_body_size`` and reading the multipart form on the side; for a
JSONL file (``purpose=batch``) ``JsonlModels`` notes the models its lines name, one line at a time.
``batch_refusal`` then refuses a batch whose input file names another provider's model. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from transforms.config import Route
from transforms.errors import GatewayError
from transforms.limits import MAX_STREAM_EVENT_BYTES
from transforms.multipart import Field, FileData, FileEnd, FileStart, MultipartError, MultipartReader

MAX_BATCH_LINE_BYTES = MAX_STREAM_EVENT_BYTES  # one JSONL line read whole; a longer one is not read
MAX_BATCH_MODELS = 256  # distinct models noted per file

# Model names that belong to providers other than OpenAI (and Azure OpenAI), by prefix. A model a
# configured route serves is judged by that route's provider first.
_FOREIGN_PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("models/gemini", "gemini"),
    ("imagen", "gemini"),
    ("command", "cohere"),
    ("embed-english", "cohere"),
    ("embed-multilingual", "cohere"),
    ("mistral", "mistral"),
    ("mixtral", "mistral"),
    ("codestral", "mistral"),
    ("ministral", "mistral"),
    ("pixtral", "mistral"),
    ("magistral", "mistral"),
    ("anthropic.", "bedrock"),
    ("amazon.", "bedrock"),
    ("meta.", "bedrock"),
    ("cohere.", "bedrock"),
    ("us.anthropic.", "bedrock"),
    ("eu.anthropic.", "bedrock"),
    ("arn:aws:bedrock", "bedrock"),
)
_OPENAI_FAMILY = frozenset({"openai", "azure"})


class JsonlModels:
    """The models named by the lines of a JSONL batch file (``body.model``), fed in chunks. Memory:
    one line at most (``MAX_BATCH_LINE_BYTES``); a line that is longer or not JSON stops the reading
    and is said in ``problem``."""

    __slots__ = ("_partial", "lines", "models", "problem")

    def __init__(self) -> None:
        self.models: dict[str, int] = {}  # model -> the first line naming it (1-based)
        self.lines = 0
        self.problem: str | None = None
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        if self.problem is not None:
            return
        if not self.lines and not self._partial and data.lstrip()[:1] not in (b"{", b""):
            self.problem = "it is not JSON Lines"  # a binary file: nothing is kept of it
            return
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            piece = data[start:end]
            if self._partial:
                self._partial += piece
                piece = bytes(self._partial)
                self._partial.clear()
            self._line(piece)
            start = end + 1
            if self.problem is not None:
                return
        rest = data[start:]
        if len(self._partial) + len(rest) > MAX_BATCH_LINE_BYTES:
            self._partial.clear()
            self.problem = f"line {self.lines + 1} is longer than {MAX_BATCH_LINE_BYTES} bytes"
            return
        self._partial += rest

    def finish(self) -> None:
        if self.problem is None and self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._line(line)

    def _line(self, line: bytes) -> None:
        self.lines += 1
        if not line.strip():
            return
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.problem = f"line {self.lines} is not JSON"
            return
        body = item.get("body") if isinstance(item, dict) else None
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and model not in self.models:
            if len(self.models) >= MAX_BATCH_MODELS:
                self.problem = f"it names more than {MAX_BATCH_MODELS} models"
                return
            self.models[model] = self.lines


class UploadWatch:
    """The stream of a file upload's body (mitmproxy's ``flow.request.stream``): each chunk goes on
    unchanged until the body passes ``limit`` bytes (0: no limit), after which nothing more is sent
    and ``over_limit`` is set (the gateway answers 413). The multipart form is read on the side:
    its fields, and the models of a JSONL file part unless ``purpose`` says it is not a batch file.
    A form that cannot be read is noted in ``error`` and still passes on untouched."""

    def __init__(self, limit: int, boundary: str | None) -> None:
        self.limit = limit
        self.size = 0
        self.over_limit = False
        self.ended = False
        self.fields: dict[str, str] = {}
        self.models: JsonlModels | None = None
        self.error: str | None = None
        self._reader = MultipartReader(boundary) if boundary else None

    def __call__(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            self.ended = True
            self._finish()
            return []
        if self.over_limit:
            return []
        self.size += len(chunk)
        if self.limit and self.size > self.limit:
            self.over_limit = True
            self._reader = None
            return []
        if self._reader is not None:
            try:
                self._read(self._reader.feed(chunk))
            except MultipartError as e:
                self._stop(str(e))
        return [chunk]

    @property
    def batch_file(self) -> bool:
        return self.fields.get("purpose") == "batch" and self.models is not None

    def _read(self, events: Iterable[object]) -> None:
        for event in events:
            if isinstance(event, FileData):
                if self.models is not None:
                    self.models.feed(event.data)
            elif isinstance(event, Field):
                self.fields[event.name] = event.value
            elif isinstance(event, FileStart):
                if event.part.name == "file" and self.fields.get("purpose", "batch") == "batch":
                    self.models = JsonlModels()
            elif isinstance(event, FileEnd) and self.models is not None:
                self.models.finish()

    def _finish(self) -> None:
        if self._reader is not None:
            try:
                self._reader.finish()
            except MultipartError as e:
                self._stop(str(e))

    def _stop(self, message: str) -> None:
        self.error = message
        self._reader = None
        self.models = None


@dataclass(frozen=True, slots=True)
class KnownFile:
    """A batch input file uploaded through the gateway: the models its lines name."""

    models: Mapping[str, int] = field(default_factory=dict)
    problem: str | None = None


def model_owner(model: str, routes: Iterable[Route]) -> tuple[str, str | None] | None:
    """(provider, route name) of a model that is not OpenAI's: the first configured route naming
    the model decides; else the name's prefix (no route: None as the route)."""
    for route in routes:
        if route.model.name == model:
            return None if route.provider in _OPENAI_FAMILY else (route.provider, route.name)
    lowered = model.lower()
    for prefix, provider in _FOREIGN_PREFIXES:
        if lowered.startswith(prefix):
            return provider, None
    return None


def batch_refusal(
    file_id: str, known: KnownFile | None, route: Route, routes: Iterable[Route]
) -> GatewayError | None:
    """Why a batch on ``route`` must not run the uploaded file ``file_id``, or None. A file the
    gateway did not see uploaded cannot be judged and is let through."""
    if known is None:
        return None
    if known.problem is not None:
        return GatewayError(
            400,
            f"batch input file {file_id} was uploaded through the gateway but could not be checked: "
            f"{known.problem}",
            "invalid_batch_input",
            param="input_file_id",
        )
    routes = tuple(routes)
    for model, line in known.models.items():
        owner = model_owner(model, routes)
        if owner is None:
            continue
        provider, by_route = owner
        served = f" (served by route '{by_route}')" if by_route else ""
        return GatewayError(
            400,
            f"batch input file {file_id} names model '{model}' on line {line}, a {provider} model{served}: "
            f"this route sends batches to {route.provider}, which cannot run it",
            "model_not_allowed",
            param="input_file_id",
        )
    return None
