"""Unit tests of the images route types' pure parts: multipart bodies, the images fields, the
gemini and bedrock image transforms, and their registration."""

from __future__ import annotations

import httpx
import pytest

from transforms import multipart
from transforms.config import GatewayConfig, ModelOptions
from transforms.errors import GatewayError
from transforms.image_fields import IMAGE_EDITS, IMAGE_GENERATIONS, ImageFile, aspect_ratio, sniff_mime
from transforms.pipeline import prepare
from transforms.providers import bedrock_images, gemini_images
from transforms.registry import SPECS
from transforms.types import CallContext, Inbound


def form_body(**files: tuple[str, bytes, str]) -> tuple[str, bytes]:
    request = httpx.Request(
        "POST", "http://x/", data={"prompt": "a hat", "n": "2"}, files=list(files.items())
    )
    return request.headers["content-type"], request.read()


def ctx(model: str, route_type: str = IMAGE_GENERATIONS) -> CallContext:
    return CallContext("r", route_type, "p", model, ModelOptions(), False, "id", 1700000000)


def test_multipart_parts_are_sliced_as_bytes():
    data = b"\x89PNG\r\n\x1a\n\r\n--not-a-boundary\r\n\x00\xff"
    ctype, body = form_body(image=("a.png", data, "image/png"))
    parts = multipart.parse(ctype, body)
    assert [(p.name, p.filename, p.content_type) for p in parts] == [
        ("prompt", None, None),
        ("n", None, None),
        ("image", "a.png", "image/png"),
    ]
    assert parts[2].data == data
    assert parts[0].data == b"a hat"


def test_multipart_field_is_added_before_the_closing_delimiter():
    ctype, body = form_body(image=("a.png", b"IMG", "image/png"))
    extended = multipart.with_field(ctype, body, "model", "gpt-image-1")
    assert extended.startswith(body[: body.rfind(b"--" + multipart.boundary_of(ctype).encode() + b"--")])
    assert [(p.name, p.data) for p in multipart.parse(ctype, extended)][-1] == ("model", b"gpt-image-1")


@pytest.mark.parametrize(
    ("ctype", "body", "words"),
    [
        ("application/json", b"{}", "expected a multipart/form-data body"),
        ("multipart/form-data", b"", "without a boundary"),
        ("multipart/form-data; boundary=b", b"nothing here", "does not contain its boundary"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
            "field name",
        ),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx',
            "closing",
        ),
    ],
)
def test_malformed_multipart_is_a_400(ctype, body, words):
    with pytest.raises(GatewayError) as caught:
        multipart.parse(ctype, body)
    assert caught.value.status == 400
    assert words in caught.value.message


def test_image_types_are_read_from_their_bytes():
    assert sniff_mime(b"\x89PNG\r\n\x1a\nrest", "application/octet-stream") == "image/png"
    assert sniff_mime(b"\xff\xd8\xff\xdb", None) == "image/jpeg"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8", None) == "image/webp"
    assert sniff_mime(b"????", "image/heic; x=1") == "image/heic"


def test_sizes_become_reduced_aspect_ratios_or_a_400():
    allowed = frozenset({"16:9", "1:1"})
    assert aspect_ratio("p", {"size": "1792x1008"}, allowed) == "16:9"
    assert aspect_ratio("p", {"size": "auto"}, allowed) is None
    with pytest.raises(GatewayError) as caught:
        aspect_ratio("p", {"size": "1024x1536"}, allowed)
    assert caught.value.param == "size"
    with pytest.raises(GatewayError) as caught:
        aspect_ratio("p", {"size": "big"}, allowed)
    assert caught.value.param == "size"


def test_the_images_route_types_are_registered_on_gemini_and_bedrock_only():
    for name, spec in SPECS.items():
        served = {IMAGE_GENERATIONS, IMAGE_EDITS} <= set(spec.routes)
        assert served == (name in ("gemini", "bedrock")), name
    assert "llm/v1/chat" in SPECS["gemini"].routes  # the wire format's own route types are kept


def test_bedrock_refuses_a_model_that_draws_no_images():
    with pytest.raises(GatewayError) as caught:
        bedrock_images.build_generations({"prompt": "x"}, ctx("anthropic.claude-3-haiku-20240307-v1:0"))
    assert caught.value.param == "model"


def test_bedrock_inpainting_takes_one_image():
    body = {
        "prompt": "x",
        "image": [ImageFile(b"a", "image/png")] * 2,
        "mask": [ImageFile(b"m", "image/png")],
    }
    with pytest.raises(GatewayError) as caught:
        bedrock_images.build_edits(body, ctx("amazon.titan-image-generator-v2:0", IMAGE_EDITS))
    assert caught.value.param == "image"


def test_titan_error_without_images_is_a_content_policy_400():
    with pytest.raises(GatewayError) as caught:
        bedrock_images.parse_images(
            {"images": [], "error": "blocked by content filters"}, ctx("amazon.titan-image-generator-v2:0")
        )
    assert (caught.value.status, caught.value.code) == (400, "content_policy_violation")
    assert "blocked by content filters" in caught.value.message


def test_gemini_blocked_prompt_is_a_content_policy_400():
    with pytest.raises(GatewayError) as caught:
        gemini_images.parse_images(
            {"promptFeedback": {"blockReason": "SAFETY"}}, ctx("gemini-2.5-flash-image")
        )
    assert caught.value.code == "content_policy_violation"
    assert "SAFETY" in caught.value.message


def test_imagen_filtered_predictions_say_why():
    body = {"predictions": [{"raiFilteredReason": "person generation blocked"}]}
    with pytest.raises(GatewayError) as caught:
        gemini_images.parse_images(body, ctx("imagen-4.0-generate-001"))
    assert "person generation blocked" in caught.value.message


def test_vertex_imagen_path():
    options = ModelOptions(
        gemini={
            "api_endpoint": "eu-aiplatform.googleapis.com",
            "project_id": "p",
            "location_id": "europe-west4",
        }
    )
    c = CallContext("r", IMAGE_GENERATIONS, "gemini", "imagen-3.0-generate-002", options, False, "id", 1)
    req = gemini_images.build_generations({"prompt": "x"}, c)
    assert (
        req.path
        == "/v1/projects/p/locations/europe-west4/publishers/google/models/imagen-3.0-generate-002:predict"
    )
    assert req.body == {"instances": [{"prompt": "x"}]}


def test_ws_upstream_urls_only_on_realtime_routes():
    route = {
        "name": "r",
        "route_type": "image/v1/images/generations",
        "model": {"provider": "openai", "options": {"upstream_url": "wss://example.com"}},
    }
    with pytest.raises(ValueError, match="ws\\(s\\):// only on realtime"):
        GatewayConfig.model_validate({"routes": [route]})


def test_forwarded_images_carry_a_body_auth_parameter_and_the_route_model():
    cfg = GatewayConfig.model_validate(
        {
            "routes": [
                {
                    "name": "img",
                    "route_type": "image/v1/images/edits",
                    "auth": {"param_name": "api_key", "param_value": "route-key", "param_location": "body"},
                    "model": {"provider": "openai", "name": "gpt-image-1"},
                }
            ]
        }
    )
    ctype, body = form_body(image=("a.png", b"IMG", "image/png"))
    inbound = Inbound("POST", "", "/v1/images/edits", [], {"content-type": ctype}, body)
    prep = prepare(cfg.routes[0], inbound, request_id="1", now=1)
    assert prep.upstream.url == "https://api.openai.com/v1/images/edits"
    assert prep.binary_request  # a forwarded multipart edit: never logged as text nor recorded in cassettes
    fields = {p.name: p.data for p in multipart.parse(ctype, prep.upstream.body)}
    assert fields == {
        "prompt": b"a hat",
        "n": b"2",
        "image": b"IMG",
        "api_key": b"route-key",
        "model": b"gpt-image-1",
    }
    assert prep.upstream.body.startswith(
        body[: body.rfind(b"--" + multipart.boundary_of(ctype).encode() + b"--")]
    )
