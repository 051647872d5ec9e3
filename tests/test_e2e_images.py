"""End to end: the openai SDK's ``images.generate`` and ``images.edit`` through mitmdump, on
openai and azure (forwarded byte for byte) and on gemini (Imagen ``:predict``, and generateContent
image models) and bedrock (Titan/Nova Canvas, Stability) translated both ways; the answers parsed
by the SDK's ImagesResponse, the provider requests checked field by field, the refusals as 400s
naming the field, and the statistics records."""

from __future__ import annotations

import base64
from typing import Any

import openai
import orjson
import pytest
from conftest import route
from test_e2e_bedrock import ACCESS_KEY, SECRET_KEY, assert_signed

from transforms import multipart

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # image bytes, never decoded
MASK = b"\x89PNG\r\n\x1a\n" + b"\x00\xff" * 300
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(200))
OUT1 = base64.b64encode(b"first generated image").decode()
OUT2 = base64.b64encode(b"second generated image").decode()
AWS = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
BEDROCK_OPTIONS = {"bedrock": {"aws_region": "us-east-1"}}
GEMINI_AUTH = {"header_name": "x-goog-api-key", "header_value": "gemini-route-key"}
OPENAI_AUTH = {"header_name": "Authorization", "header_value": "Bearer sk-route-key"}
AZURE_OPTIONS = {
    "azure_instance": "unused",
    "azure_deployment_id": "img-deployment",
    "azure_api_version": "2025-04-01-preview",
}


def image_routes(url: str) -> list[dict[str, Any]]:
    gen, edit = "image/v1/images/generations", "image/v1/images/edits"

    def pair(prefix: str, provider: str, model: str | None, **extra: Any) -> list[dict[str, Any]]:
        return [
            route(
                f"{prefix}-gen", f"/{prefix}/v1/images/generations", gen, provider, url, model=model, **extra
            ),
            route(f"{prefix}-edit", f"/{prefix}/v1/images/edits", edit, provider, url, model=model, **extra),
        ]

    return [
        *pair("oai", "openai", "gpt-image-1", auth=OPENAI_AUTH),
        *pair("oai-any", "openai", None, auth=OPENAI_AUTH),
        *pair(
            "az",
            "azure",
            None,
            auth={"header_name": "api-key", "header_value": "az-key"},
            options=AZURE_OPTIONS,
        ),
        *pair("imagen", "gemini", "imagen-4.0-generate-001", auth=GEMINI_AUTH),
        *pair("gimg", "gemini", "gemini-2.5-flash-image", auth=GEMINI_AUTH),
        *pair("nova", "bedrock", "amazon.nova-canvas-v1:0", auth=AWS, options=BEDROCK_OPTIONS),
        *pair("sd", "bedrock", "stability.sd3-5-large-v1:0", auth=AWS, options=BEDROCK_OPTIONS),
        *pair("inpaint", "bedrock", "stability.stable-image-inpaint-v1:0", auth=AWS, options=BEDROCK_OPTIONS),
    ]


@pytest.fixture
def gw(gateway, emulator):
    return gateway(image_routes(emulator.url))


class Captured:
    """The bodies the SDK sent, as they left it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []

    def __call__(self, request: Any) -> None:
        self.bodies.append(request.read())
        self.content_types.append(request.headers.get("content-type", ""))


def client(gw, prefix: str, captured: Captured | None = None) -> openai.OpenAI:
    hooks = {"request": [captured]} if captured else {}
    return openai.OpenAI(
        base_url=f"{gw.url}/{prefix}/v1",
        api_key="sk-client-own-key",
        max_retries=0,
        timeout=10,
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
    )


def form(body: bytes, content_type: str) -> dict[str, list[multipart.Part]]:
    out: dict[str, list[multipart.Part]] = {}
    for part in multipart.parse(content_type, body):
        out.setdefault(part.name, []).append(part)
    return out


# --- openai and azure: forwarded ---------------------------------------------------------------------


def test_openai_generation_forwarded_with_route_auth(gw, emulator):
    answer = {
        "created": 1700000000,
        "data": [{"b64_json": OUT1, "revised_prompt": "a red fox, detailed"}],
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"text_tokens": 12, "image_tokens": 0},
            "output_tokens": 4160,
            "total_tokens": 4172,
        },
    }
    emulator.script(200, answer)
    captured = Captured()
    result = client(gw, "oai", captured).images.generate(
        prompt="a red fox", model="gpt-image-1", size="1024x1024"
    )
    assert result.data[0].b64_json == OUT1
    assert result.data[0].revised_prompt == "a red fox, detailed"
    assert result.usage.input_tokens == 12 and result.usage.output_tokens == 4160
    sent = emulator.last
    assert sent.path == "/v1/images/generations"
    assert sent.headers["authorization"] == "Bearer sk-route-key"
    assert sent.body == captured.bodies[0]  # byte for byte
    record = gw.wait_records(1)[0]["ai"]["proxy"]
    assert record["meta"]["route"] == "oai-gen"
    assert record["usage"]["prompt_tokens"] == 12
    assert record["usage"]["completion_tokens"] == 4160
    assert record["usage"]["total_tokens"] == 4172


def test_openai_streamed_generation_passes_through_with_its_usage(gw, emulator):
    common = {
        "background": "opaque",
        "created_at": 1,
        "output_format": "png",
        "quality": "low",
        "size": "1024x1024",
    }
    partial = {"type": "image_generation.partial_image", "b64_json": OUT1, "partial_image_index": 0, **common}
    usage = {
        "input_tokens": 9,
        "input_tokens_details": {"text_tokens": 9, "image_tokens": 0},
        "output_tokens": 272,
        "total_tokens": 281,
    }
    completed = {"type": "image_generation.completed", "b64_json": OUT2, "usage": usage, **common}
    sse = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
        for e in (partial, completed)
    )
    emulator.script(200, sse, content_type="text/event-stream", events=True)
    events = list(client(gw, "oai").images.generate(prompt="a fox", stream=True, partial_images=1))
    assert [e.type for e in events] == ["image_generation.partial_image", "image_generation.completed"]
    assert events[1].b64_json == OUT2
    assert events[1].usage.output_tokens == 272
    assert emulator.last.json() == {
        "prompt": "a fox",
        "stream": True,
        "partial_images": 1,
        "model": "gpt-image-1",
    }
    record = gw.wait_records(1)[0]["ai"]["proxy"]
    assert record["meta"]["request_mode"] == "stream"
    assert (record["usage"]["prompt_tokens"], record["usage"]["completion_tokens"]) == (9, 272)
    assert "estimated" not in record["usage"]


def test_openai_generation_gets_the_route_model(gw, emulator):
    emulator.script(200, {"created": 1, "data": [{"b64_json": OUT1}]})
    client(gw, "oai").images.generate(prompt="a fox")
    assert emulator.last.json() == {"prompt": "a fox", "model": "gpt-image-1"}


def test_openai_generation_refuses_another_model(gw, emulator):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw, "oai").images.generate(prompt="a fox", model="dall-e-3")
    assert "cannot use own model - must be: gpt-image-1" in caught.value.message
    assert emulator.requests == []


def test_openai_edit_forwarded_byte_for_byte(gw, emulator):
    emulator.script(200, {"created": 1, "data": [{"b64_json": OUT2}]})
    captured = Captured()
    result = client(gw, "oai-any", captured).images.edit(
        image=("cat.png", PNG, "image/png"),
        mask=("mask.png", MASK, "image/png"),
        prompt="add a hat",
        model="gpt-image-1",
    )
    assert result.data[0].b64_json == OUT2
    sent = emulator.last
    assert sent.path == "/v1/images/edits"
    assert sent.headers["authorization"] == "Bearer sk-route-key"
    assert sent.headers["content-type"] == captured.content_types[0]
    assert sent.body == captured.bodies[0]


def test_openai_edit_gets_the_route_model_as_one_more_field(gw, emulator):
    emulator.script(200, {"created": 1, "data": [{"b64_json": OUT2}]})
    captured = Captured()
    client(gw, "oai", captured).images.edit(image=("cat.png", PNG, "image/png"), prompt="add a hat")
    sent = emulator.last
    ctype = captured.content_types[0]
    assert sent.body == multipart.with_field(ctype, captured.bodies[0], "model", "gpt-image-1")
    fields = form(sent.body, ctype)
    assert fields["image"][0].data == PNG
    assert fields["model"][0].data == b"gpt-image-1"


def test_azure_generation_and_edit_on_the_deployment(gw, emulator):
    emulator.script(200, {"created": 1, "data": [{"b64_json": OUT1}]})
    emulator.script(200, {"created": 2, "data": [{"b64_json": OUT2}]})
    captured = Captured()
    c = client(gw, "az", captured)
    assert c.images.generate(prompt="a fox", model="gpt-image-1").data[0].b64_json == OUT1
    assert c.images.edit(image=("cat.png", PNG, "image/png"), prompt="a hat").data[0].b64_json == OUT2
    gen, edit = emulator.requests
    assert gen.path == "/openai/deployments/img-deployment/images/generations?api-version=2025-04-01-preview"
    assert edit.path == "/openai/deployments/img-deployment/images/edits?api-version=2025-04-01-preview"
    assert gen.headers["api-key"] == edit.headers["api-key"] == "az-key"
    assert "authorization" not in gen.headers
    assert gen.body == captured.bodies[0] and edit.body == captured.bodies[1]


# --- gemini -------------------------------------------------------------------------------------------


def test_imagen_generation_through_predict(gw, emulator):
    emulator.script(
        200,
        {
            "predictions": [
                {"bytesBase64Encoded": OUT1, "mimeType": "image/png", "prompt": "a fox in snow, photo"},
                {"bytesBase64Encoded": OUT2, "mimeType": "image/png"},
            ]
        },
    )
    result = client(gw, "imagen").images.generate(
        prompt="a fox", n=2, size="1792x1008", response_format="b64_json", output_format="png"
    )
    assert [d.b64_json for d in result.data] == [OUT1, OUT2]
    assert result.data[0].revised_prompt == "a fox in snow, photo"
    assert result.data[1].revised_prompt is None
    assert result.output_format == "png"
    assert result.usage is None
    sent = emulator.last
    assert sent.path == "/v1beta/models/imagen-4.0-generate-001:predict"
    assert sent.headers["x-goog-api-key"] == "gemini-route-key"
    assert "authorization" not in sent.headers
    assert sent.json() == {
        "instances": [{"prompt": "a fox"}],
        "parameters": {"sampleCount": 2, "aspectRatio": "16:9", "outputOptions": {"mimeType": "image/png"}},
    }
    record = gw.wait_records(1)[0]["ai"]["proxy"]
    assert record["meta"]["provider_name"] == "gemini"
    assert record["meta"]["request_model"] == "imagen-4.0-generate-001"
    assert record["usage"]["total_tokens"] == 0


def gemini_image_answer(*images: tuple[str, str], thought: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": "Here is your image."}]
    if thought:
        parts.insert(0, {"inlineData": {"mimeType": "image/png", "data": thought}, "thought": True})
    parts += [{"inlineData": {"mimeType": mime, "data": data}} for data, mime in images]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 270,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": 12},
                {"modality": "IMAGE", "tokenCount": 258},
            ],
            "candidatesTokenCount": 1290,
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            "totalTokenCount": 1560,
        },
    }


def test_gemini_image_model_generation_through_generate_content(gw, emulator):
    draft = base64.b64encode(b"a draft").decode()
    emulator.script(200, gemini_image_answer((OUT1, "image/png"), thought=draft))
    result = client(gw, "gimg").images.generate(prompt="a fox", size="1024x1024")
    assert [d.b64_json for d in result.data] == [OUT1]  # the thought image is a draft
    assert result.usage.input_tokens == 270
    assert result.usage.input_tokens_details.text_tokens == 12
    assert result.usage.input_tokens_details.image_tokens == 258
    assert result.usage.output_tokens == 1290
    assert result.usage.output_tokens_details.image_tokens == 1290
    assert result.usage.total_tokens == 1560
    sent = emulator.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert sent.json() == {
        "contents": [{"role": "user", "parts": [{"text": "a fox"}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "1:1"}},
    }
    record = gw.wait_records(1)[0]["ai"]["proxy"]
    assert (record["usage"]["prompt_tokens"], record["usage"]["completion_tokens"]) == (270, 1290)


def test_gemini_image_model_edit_sends_the_images_inline(gw, emulator):
    emulator.script(200, gemini_image_answer((OUT2, "image/jpeg")))
    result = client(gw, "gimg").images.edit(
        image=[("cat.png", PNG, "application/octet-stream"), ("dog.jpg", JPEG, "image/jpeg")],
        prompt="both in hats",
    )
    assert result.data[0].b64_json == OUT2
    assert result.output_format == "jpeg"
    parts = emulator.last.json()["contents"][0]["parts"]
    assert parts == [
        {"text": "both in hats"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
        {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(JPEG).decode()}},
    ]


# --- bedrock ------------------------------------------------------------------------------------------


def test_nova_canvas_generation(gw, emulator):
    emulator.script(200, {"images": [OUT1, OUT2]})
    result = client(gw, "nova").images.generate(prompt="a fox", n=2, size="1280x720", quality="hd")
    assert [d.b64_json for d in result.data] == [OUT1, OUT2]
    sent = emulator.last
    assert sent.path == "/model/amazon.nova-canvas-v1%3A0/invoke"
    assert sent.json() == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a fox"},
        "imageGenerationConfig": {"numberOfImages": 2, "width": 1280, "height": 720, "quality": "premium"},
    }
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)


def test_nova_canvas_edit_with_a_mask_inpaints(gw, emulator):
    emulator.script(200, {"images": [OUT2]})
    result = client(gw, "nova").images.edit(
        image=("cat.png", PNG, "image/png"), mask=("mask.png", MASK, "image/png"), prompt="a hat"
    )
    assert result.data[0].b64_json == OUT2
    sent = emulator.last
    assert sent.json() == {
        "taskType": "INPAINTING",
        "inPaintingParams": {
            "image": base64.b64encode(PNG).decode(),
            "text": "a hat",
            "maskImage": base64.b64encode(MASK).decode(),
        },
    }
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)


def test_nova_canvas_edit_without_a_mask_is_a_variation(gw, emulator):
    emulator.script(200, {"images": [OUT1]})
    client(gw, "nova").images.edit(image=[("a.png", PNG), ("b.jpg", JPEG)], prompt="brighter", n=1)
    assert emulator.last.json() == {
        "taskType": "IMAGE_VARIATION",
        "imageVariationParams": {
            "images": [base64.b64encode(PNG).decode(), base64.b64encode(JPEG).decode()],
            "text": "brighter",
        },
        "imageGenerationConfig": {"numberOfImages": 1},
    }


def test_stability_generation_and_inpaint(gw, emulator):
    emulator.script(200, {"seeds": [42], "finish_reasons": [None], "images": [OUT1]})
    result = client(gw, "sd").images.generate(prompt="a fox", size="1536x1024", output_format="jpeg")
    assert result.data[0].b64_json == OUT1
    sent = emulator.last
    assert sent.path == "/model/stability.sd3-5-large-v1%3A0/invoke"
    assert sent.json() == {"prompt": "a fox", "aspect_ratio": "3:2", "output_format": "jpeg"}
    assert_signed(sent, SECRET_KEY, ACCESS_KEY, "us-east-1", emulator.url)

    emulator.script(200, {"seeds": [7], "finish_reasons": [None], "images": [OUT2]})
    result = client(gw, "inpaint").images.edit(image=("cat.png", PNG), prompt="a hat")
    assert result.data[0].b64_json == OUT2
    assert emulator.last.path == "/model/stability.stable-image-inpaint-v1%3A0/invoke"
    assert emulator.last.json() == {"image": base64.b64encode(PNG).decode(), "prompt": "a hat"}


def test_stability_filtered_answer_is_a_content_policy_400(gw, emulator):
    emulator.script(200, {"seeds": [1], "finish_reasons": ["Filter reason: prompt"], "images": []})
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw, "sd").images.generate(prompt="something filtered")
    assert caught.value.code == "content_policy_violation"
    assert "Filter reason: prompt" in caught.value.message


def test_bedrock_error_comes_back_in_openai_shape(gw, emulator):
    emulator.script(400, {"message": "Malformed input request: width must be a multiple of 64"})
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw, "nova").images.generate(prompt="a fox", size="1000x1000")
    assert "width must be a multiple of 64" in caught.value.message


# --- refusals: a 400 naming the field, nothing sent upstream ----------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "call", "param", "words"),
    [
        ("imagen", {"prompt": "x", "response_format": "url"}, "response_format", "b64_json"),
        ("gimg", {"prompt": "x", "style": "vivid"}, "style", "not supported"),
        ("imagen", {"prompt": "x", "size": "1536x1024"}, "size", "aspect ratio 3:2"),
        ("imagen", {"prompt": "x", "output_format": "webp"}, "output_format", "png or jpeg"),
        ("nova", {"prompt": "x", "quality": "high"}, "quality", "'standard', 'hd' or 'auto'"),
        ("nova", {"prompt": "x", "style": "natural"}, "style", "not supported"),
        ("sd", {"prompt": "x", "n": 2}, "n", "one image per call"),
        ("sd", {"prompt": "x", "response_format": "url"}, "response_format", "b64_json"),
        ("gimg", {"prompt": "x", "background": "transparent"}, "background", "'auto'"),
    ],
)
def test_generation_refusals(gw, emulator, prefix, call, param, words):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw, prefix).images.generate(**call)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert words in caught.value.message
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("prefix", "extra", "param", "words"),
    [
        ("gimg", {"mask": ("m.png", MASK)}, "mask", "no mask"),
        ("inpaint", {"mask": ("m.png", MASK)}, "mask", "transparent"),
        ("imagen", {}, "model", "Gemini image model"),
        ("sd", {}, "model", "inpaint"),
        ("inpaint", {"size": "1024x1024"}, "size", "Stability edits"),
        ("nova", {"response_format": "url"}, "response_format", "b64_json"),
    ],
)
def test_edit_refusals(gw, emulator, prefix, extra, param, words):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gw, prefix).images.edit(image=("cat.png", PNG), prompt="a hat", **extra)
    assert caught.value.param == param
    assert words in caught.value.message
    assert emulator.requests == []


def test_edit_without_multipart_is_a_400(gw, emulator):
    c = client(gw, "nova")
    with pytest.raises(openai.BadRequestError) as caught:
        c.post("/images/edits", body={"prompt": "x"}, cast_to=object)
    assert "multipart/form-data" in caught.value.message
    assert emulator.requests == []


def test_a_malformed_upstream_answer_is_a_502(gw, emulator):
    emulator.script(200, b"not json", content_type="application/json")
    with pytest.raises(openai.InternalServerError) as caught:
        client(gw, "nova").images.generate(prompt="x")
    assert caught.value.status_code == 502
    assert orjson.loads(caught.value.response.content)["error"]["code"] == "bad_upstream_response"
