"""Pure tests: the multipart reader, the upload watch, the batch rule and the routing of OpenAI's own
APIs (files, batches, assistants, audio) on openai and azure."""

from __future__ import annotations

import orjson
import pytest
from streams import splits

from transforms import uploads
from transforms.config import Route
from transforms.errors import GatewayError
from transforms.multipart import (
    Field,
    FileData,
    FileEnd,
    FileStart,
    MultipartError,
    MultipartReader,
    boundary_of,
    is_text_type,
    parse,
)
from transforms.openai_apis import api_call, prepare_openai_api, streams_request_body
from transforms.registry import spec_for
from transforms.types import Inbound
from transforms.uploads import JsonlModels, KnownFile, UploadWatch, batch_refusal, model_owner

BOUNDARY = "XyZ-b0und"
B = BOUNDARY.encode()
FILE = bytes(range(256)) * 3 + b"\r\n--XyZ-b0un" + b"\r\n-" + b"\xff" * 10


def form(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + B + f"\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + value + b"\r\n"
    return out + b"--" + B + b"--\r\n"


BODY = form(("purpose", b"batch", None), ("file", FILE, "x.bin"), ("model", b"gpt-4o-mini", None))


def read(pieces: list[bytes]) -> list[tuple]:
    reader = MultipartReader(BOUNDARY)
    events = [e for piece in pieces for e in reader.feed(piece)] + reader.finish()
    out: list[tuple] = []
    for event in events:
        if isinstance(event, FileData):
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + event.data)
            else:
                out.append(("data", event.data))
        elif isinstance(event, Field):
            out.append(("field", event.name, event.value))
        elif isinstance(event, FileStart):
            out.append(("start", event.part.name, event.part.filename, event.part.content_type))
        elif isinstance(event, FileEnd):
            out.append(("end", event.part.name))
    return out


EXPECTED = [
    ("field", "purpose", "batch"),
    ("start", "file", "x.bin", "application/octet-stream"),
    ("data", FILE),
    ("end", "file"),
    ("field", "model", "gpt-4o-mini"),
]


def test_multipart_reader_reports_fields_and_file_bytes_exactly() -> None:
    assert read([BODY]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, 64])
def test_multipart_reader_any_chunking(size: int) -> None:
    assert read(splits(BODY, list(range(size, len(BODY), size)))) == EXPECTED


def test_multipart_problems() -> None:
    with pytest.raises(MultipartError, match="before its closing delimiter"):
        read([BODY[:-12]])
    with pytest.raises(MultipartError, match="headers exceed"):
        read([b"--" + B + b"\r\nX: " + b"a" * 20000])
    fields = [
        (p.name, p.data) for p in parse(f"multipart/form-data; boundary={BOUNDARY}", BODY) if not p.filename
    ]
    assert fields == [("purpose", b"batch"), ("model", b"gpt-4o-mini")]


def test_content_types() -> None:
    assert boundary_of('multipart/form-data; boundary="ab c"') == "ab c"
    with pytest.raises(GatewayError, match="without a boundary"):
        boundary_of("multipart/form-data")
    assert boundary_of("application/json; boundary=x") is None
    for text in ("application/json", "text/plain; charset=utf-8", "text/vtt", "", "application/problem+json"):
        assert is_text_type(text), text
    for binary in ("multipart/form-data; boundary=x", "audio/mpeg", "application/octet-stream", "image/png"):
        assert not is_text_type(binary), binary


def jsonl(*models: str) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "custom_id": str(i),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"messages": [{"role": "user", "content": "model: x"}], "model": m},
            }
        )
        + b"\n"
        for i, m in enumerate(models)
    )


@pytest.mark.parametrize("size", [1, 5, 50, 10_000])
def test_jsonl_models_in_any_chunking(size: int) -> None:
    data = jsonl("gpt-4o", "gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini")
    reader = JsonlModels()
    for piece in splits(data, list(range(size, len(data), size))):
        reader.feed(piece)
    reader.finish()
    assert (reader.models, reader.problem, reader.lines) == (
        {"gpt-4o": 1, "claude-sonnet-4-5": 3, "gpt-4o-mini": 4},
        None,
        4,
    )


def test_jsonl_models_stop_at_what_they_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = JsonlModels()
    reader.feed(jsonl("a") + b"not json\n" + jsonl("b"))
    assert (reader.models, reader.problem) == ({"a": 1}, "line 2 is not JSON")
    binary = JsonlModels()
    binary.feed(b"\x00\x01" * 100)
    assert (binary.models, binary.problem, binary._partial) == ({}, "it is not JSON Lines", bytearray())
    monkeypatch.setattr(uploads, "MAX_BATCH_LINE_BYTES", 100)
    long = JsonlModels()
    long.feed(jsonl("a") + b'{"body": {"model": "' + b"x" * 200)
    assert (long.models, long.problem) == ({"a": 1}, "line 2 is longer than 100 bytes")


def test_upload_watch_passes_bytes_and_reads_the_form() -> None:
    body = form(("purpose", b"batch", None), ("file", jsonl("gpt-4o", "gemini-2.5-flash"), "in.jsonl"))
    watch = UploadWatch(0, BOUNDARY)
    out = [piece for chunk in splits(body, [10, 100, 101, 250]) for piece in watch(chunk)] + watch(b"")
    assert b"".join(out) == body
    assert watch.batch_file and watch.error is None and watch.ended
    assert watch.models is not None and watch.models.models == {"gpt-4o": 1, "gemini-2.5-flash": 2}


def test_upload_watch_cuts_past_the_limit_and_skips_other_purposes() -> None:
    watch = UploadWatch(100, BOUNDARY)
    assert watch(BODY[:60]) == [BODY[:60]]
    assert watch(BODY[60:120]) == []
    assert watch(BODY[120:]) == []
    assert watch.over_limit
    other = UploadWatch(0, BOUNDARY)
    other(form(("purpose", b"fine-tune", None), ("file", jsonl("claude-x"), "a.jsonl")))
    other(b"")
    assert other.models is None and not other.batch_file
    broken = UploadWatch(0, BOUNDARY)
    assert broken(b"--" + B + b"\r\nX: " + b"a" * 20000) != []  # still passed on
    assert broken.error is not None and broken.models is None


def route(route_type: str, provider: str = "openai", **extra) -> Route:
    options = (
        {"upstream_url": "http://up"}
        if provider == "openai"
        else {
            "azure_instance": "res",
            "azure_deployment_id": "dep",
            "azure_api_version": extra.pop("version", "2024-10-21"),
        }
    )
    document = {
        "name": f"r-{provider}",
        "route_type": route_type,
        "model": {"provider": provider, "options": options},
        "auth": {"header_name": "api-key", "header_value": "sk-secret-1"},
    }
    return Route.model_validate({**document, **extra})


def test_batch_refusal_names_the_model_and_its_provider() -> None:
    batches = route("llm/v1/batches")
    claude = Route.model_validate(
        {
            "name": "claude",
            "route_type": "llm/v1/chat",
            "model": {
                "provider": "anthropic",
                "name": "my-claude",
                "options": {"anthropic_version": "2023-06-01"},
            },
        }
    )
    own = Route.model_validate(
        {
            "name": "gpt",
            "route_type": "llm/v1/chat",
            "model": {"provider": "openai", "name": "claude-lookalike"},
        }
    )
    routes = [claude, own, batches]
    assert model_owner("my-claude", routes) == ("anthropic", "claude")
    assert model_owner("claude-lookalike", routes) is None  # a configured openai route decides
    assert model_owner("gemini-2.5-pro", routes) == ("gemini", None)
    assert model_owner("gpt-4o", routes) is None
    refusal = batch_refusal("file-1", KnownFile({"gpt-4o": 1, "my-claude": 7}), batches, routes)
    assert isinstance(refusal, GatewayError) and (refusal.status, refusal.code, refusal.param) == (
        400,
        "model_not_allowed",
        "input_file_id",
    )
    assert refusal.message == (
        "batch input file file-1 names model 'my-claude' on line 7, a anthropic model (served by route "
        "'claude'): this route sends batches to openai, which cannot run it"
    )
    assert batch_refusal("file-1", KnownFile({"gpt-4o": 1}), batches, routes) is None
    assert batch_refusal("file-1", None, batches, routes) is None  # not uploaded through the gateway
    unread = batch_refusal("file-2", KnownFile({}, "line 3 is not JSON"), batches, routes)
    assert unread is not None and unread.message.endswith("could not be checked: line 3 is not JSON")


@pytest.mark.parametrize(
    ("method", "path", "ctype", "operation"),
    [
        ("POST", "/v1/files", "multipart/form-data; boundary=a", "upload"),
        ("GET", "/v1/files", "", "list"),
        ("GET", "/v1/files/file-1", "", "retrieve"),
        ("DELETE", "/v1/files/file-1", "", "delete"),
        ("GET", "/v1/files/file-1/content", "", "content"),
    ],
)
def test_files_calls(method: str, path: str, ctype: str, operation: str) -> None:
    files = route("llm/v1/files", match={"path": "/v1/files"})
    call = api_call(files, method, path, ctype)
    assert (call.collection, call.operation) == ("files", operation)
    assert call.binary_request == (operation == "upload")
    assert call.binary_response == (operation == "content")
    assert streams_request_body(files, method, path, ctype) == (operation == "upload")


def test_calls_the_apis_do_not_serve() -> None:
    files = route("llm/v1/files", match={"path": "/v1/files"})
    with pytest.raises(GatewayError, match="must be multipart/form-data") as e:
        api_call(files, "POST", "/v1/files", "application/json")
    assert e.value.status == 400
    with pytest.raises(GatewayError, match="is not a llm/v1/files call") as e:
        api_call(files, "POST", "/v1/files/file-1/content", "")
    assert e.value.status == 404
    with pytest.raises(GatewayError, match="PUT is not a llm/v1/files method") as e:
        api_call(files, "PUT", "/v1/files/x", "")
    assert e.value.status == 405
    speech = route("audio/v1/audio/speech")
    with pytest.raises(GatewayError, match="GET is not a audio/v1/audio/speech method"):
        api_call(speech, "GET", "/x", "")


def inbound(method: str, path: str, body: bytes = b"", ctype: str = "", query=()) -> Inbound:
    return Inbound(method, "", path, list(query), {"content-type": ctype, "authorization": "Bearer c"}, body)


@pytest.mark.parametrize(
    ("provider", "version", "route_type", "path", "upstream"),
    [
        ("openai", None, "llm/v1/batches", "/p/v1/batches/b1/cancel", "http://up/v1/batches/b1/cancel"),
        (
            "azure",
            "2024-10-21",
            "llm/v1/batches",
            "/p/v1/batches",
            "https://res.openai.azure.com/openai/batches?api-version=2024-10-21",
        ),
        (
            "azure",
            "preview",
            "llm/v1/files",
            "/p/v1/files/f1",
            "https://res.openai.azure.com/openai/v1/files/f1?api-version=preview",
        ),
        (
            "azure",
            "2024-10-21",
            "audio/v1/audio/transcriptions",
            "/p/v1/audio/transcriptions",
            "https://res.openai.azure.com/openai/deployments/dep/audio/transcriptions?api-version=2024-10-21",
        ),
        (
            "azure",
            "preview",
            "audio/v1/audio/translations",
            "/p/v1/audio/translations",
            "https://res.openai.azure.com/openai/v1/audio/translations?api-version=preview",
        ),
    ],
)
def test_upstream_urls(provider: str, version: str | None, route_type: str, path: str, upstream: str) -> None:
    extra = {"version": version} if version else {}
    collection = path.split("/v1/")[0] + "/v1/" + path.split("/v1/")[1].split("/")[0]
    if route_type.startswith("audio"):
        collection = path
    r = route(route_type, provider, match={"path": collection}, **extra)
    method = "POST" if route_type.startswith("audio") or path.endswith(("cancel", "batches")) else "GET"
    body = (
        form(("model", b"whisper-1", None), ("file", b"\x00\x01", "a.wav"))
        if route_type.startswith("audio")
        else b"{}"
    )
    ctype = (
        f"multipart/form-data; boundary={BOUNDARY}" if route_type.startswith("audio") else "application/json"
    )
    prep = prepare_openai_api(r, spec_for(r), inbound(method, path, body, ctype), {}, {}, 0)
    assert prep.upstream.url == upstream
    assert prep.upstream.body == body  # passed as sent
    assert prep.upstream.set_headers.get("api-key") == "sk-secret-1"


def test_assistants_always_send_the_beta_header_and_enforce_the_model() -> None:
    r = route(
        "llm/v1/assistants",
        match={"path": "/a/v1/assistants"},
        model={"provider": "openai", "name": "gpt-4o", "options": {"upstream_url": "http://up"}},
    )
    prep = prepare_openai_api(
        r, spec_for(r), inbound("POST", "/a/v1/assistants", b'{"name": "n"}'), {}, {}, 0
    )
    assert prep.upstream.set_headers["openai-beta"] == "assistants=v2"
    assert orjson.loads(prep.upstream.body) == {"name": "n", "model": "gpt-4o"}
    assert not prep.metered
    with pytest.raises(GatewayError, match="cannot use own model - must be: gpt-4o"):
        prepare_openai_api(r, spec_for(r), inbound("POST", "/a/v1/assistants", b'{"model": "o3"}'), {}, {}, 0)
    threads = route(
        "llm/v1/assistants",
        match={"path": "/a/v1/threads"},
        model={"provider": "openai", "name": "gpt-4o", "options": {"upstream_url": "http://up"}},
    )
    prep = prepare_openai_api(
        threads, spec_for(threads), inbound("GET", "/a/v1/threads/t1/messages"), {}, {}, 0
    )
    assert prep.upstream.url == "http://up/v1/threads/t1/messages"
    assert prep.upstream.set_headers["openai-beta"] == "assistants=v2"


def test_only_openai_and_azure_serve_these_route_types() -> None:
    with pytest.raises(ValueError, match="served on the openai and azure providers only, not anthropic"):
        Route.model_validate(
            {
                "name": "x",
                "route_type": "llm/v1/files",
                "model": {"provider": "anthropic", "options": {"anthropic_version": "1"}},
            }
        )
    with pytest.raises(ValueError, match="param_location 'body' cannot be used with route_type"):
        Route.model_validate(
            {
                "name": "x",
                "route_type": "audio/v1/audio/speech",
                "model": {"provider": "openai"},
                "auth": {"param_name": "k", "param_value": "v", "param_location": "body"},
            }
        )


def test_binary_bodies_are_never_decoded_for_the_flow_record_or_the_view() -> None:
    from mitmproxy import contentviews
    from mitmproxy.test import tflow

    from addon.conversation_view import LLMConversationContentview
    from transforms.masking import client_request

    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    kept = client_request(Inbound("POST", "h", "/v1/files", [], {"content-type": ctype}, BODY))
    assert (kept["body"], kept["body_size"], kept["truncated"]) == ("", len(BODY), False)
    text = client_request(
        Inbound("POST", "h", "/v1/batches", [], {"content-type": "application/json"}, b'{"a":1}')
    )
    assert text["body"] == '{"a":1}'
    flow = tflow.tflow(resp=True)
    flow.metadata["ai_proxy"] = {"client_request": kept}  # a gateway flow: its request side is the view's
    view = LLMConversationContentview()
    for kind in (ctype, "audio/mpeg", "application/octet-stream"):
        meta = contentviews.Metadata(content_type=kind, flow=flow, http_message=flow.request)
        assert view.render_priority(BODY, meta) == -1
    meta = contentviews.Metadata(content_type="application/json", flow=flow, http_message=flow.request)
    assert view.render_priority(b"{}", meta) == 2


def test_streaming_denied_on_runs_and_transcriptions() -> None:
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    body = form(("model", b"gpt-4o-transcribe", None), ("stream", b"true", None), ("file", b"\x00", "a.wav"))
    allowed = route("audio/v1/audio/transcriptions")
    prep = prepare_openai_api(allowed, spec_for(allowed), inbound("POST", "/t", body, ctype), {}, {}, 0)
    assert prep.stream and prep.usage_only and prep.binary_request and not prep.binary_response
    assert prep.upstream.set_headers["accept-encoding"] == "identity"
    denied = route("audio/v1/audio/transcriptions", response_streaming="deny")
    with pytest.raises(GatewayError, match="response streaming is not enabled for this LLM"):
        prepare_openai_api(denied, spec_for(denied), inbound("POST", "/t", body, ctype), {}, {}, 0)
    runs = route("llm/v1/assistants", match={"path": "/a/v1/threads"}, response_streaming="deny")
    run = inbound("POST", "/a/v1/threads/t1/runs", b'{"assistant_id": "a", "stream": true}')
    with pytest.raises(GatewayError, match="response streaming is not enabled"):
        prepare_openai_api(runs, spec_for(runs), run, {}, {}, 0)
