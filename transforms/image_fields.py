"""OpenAI's images API as plain data, for the providers that translate it (gemini_images,
bedrock_images): the request's fields, the image files of an edit, sizes as aspect ratios, and
the answer's shape (``created``, ``data[].b64_json``, ``revised_prompt``, ``usage``).

Pure: data in, data out.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import gcd
from typing import Any

from transforms.common import NeutralOnly, check_fields, refuse
from transforms.errors import GatewayError
from transforms.types import CallContext, Usage

IMAGE_GENERATIONS = "image/v1/images/generations"
IMAGE_EDITS = "image/v1/images/edits"
IMAGE_ROUTE_TYPES = frozenset({IMAGE_GENERATIONS, IMAGE_EDITS})

# Fields that only tag the call for OpenAI's own abuse tracking, never change the image.
IGNORED = frozenset({"model", "user", "safety_identifier"})
# Fields every translated provider accepts at their neutral value only (an answer they cannot give).
NEUTRAL: NeutralOnly = {
    "response_format": (
        lambda v: v == "b64_json",
        "is not supported (the provider returns image bytes, not URLs: ask for 'b64_json')",
    ),
    "stream": (lambda v: v is False, "is not supported (partial images are not streamed)"),
    "partial_images": (lambda v: v == 0, "is not supported (partial images are not streamed)"),
    "background": (lambda v: v == "auto", "other than 'auto' is not supported"),
    "moderation": (lambda v: v == "auto", "other than 'auto' is not supported"),
    "quality": (lambda v: v == "auto", "other than 'auto' is not supported"),
}
MIME_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An image or mask of an edit request, as the client uploaded it."""

    data: bytes
    mime: str
    filename: str | None = None

    @property
    def b64(self) -> str:
        return base64.b64encode(self.data).decode()


def sniff_mime(data: bytes, declared: str | None) -> str:
    """The image's type from its first bytes (SDKs often upload as application/octet-stream)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return (declared or "application/octet-stream").split(";", 1)[0].strip().lower()


def check(
    provider: str, body: Mapping[str, Any], translated: Iterable[str], neutral: NeutralOnly = NEUTRAL
) -> None:
    """Every field that would change the images is translated or refused with a 400 naming it."""
    check_fields(provider, body, frozenset(translated) | {"prompt"}, IGNORED, neutral)


def prompt_of(body: Mapping[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise GatewayError(
            400, "'prompt' is required (a non-empty string)", "invalid_request", param="prompt"
        )
    return prompt


def count_of(body: Mapping[str, Any]) -> int | None:
    """``n``, the number of images asked for; None when not given."""
    n = body.get("n")
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GatewayError(400, "'n' must be an integer of at least 1", "invalid_request", param="n")
    return n


def dimensions(body: Mapping[str, Any]) -> tuple[int, int] | None:
    """``size`` as (width, height); None when not given or ``auto``."""
    size = body.get("size")
    if size is None or size == "auto":
        return None
    width, sep, height = size.partition("x") if isinstance(size, str) else ("", "", "")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise GatewayError(400, "'size' must be 'auto' or WIDTHxHEIGHT", "invalid_request", param="size")
    return int(width), int(height)


def aspect_ratio(provider: str, body: Mapping[str, Any], allowed: frozenset[str]) -> str | None:
    """``size`` as the aspect ratio a provider that is asked for ratios, not pixels, takes."""
    found = dimensions(body)
    if found is None:
        return None
    width, height = found
    divisor = gcd(width, height)
    ratio = f"{width // divisor}:{height // divisor}"
    if ratio not in allowed:
        raise refuse(provider, "size", f"{body['size']} (aspect ratio {ratio}) is not supported")
    return ratio


def files(body: Mapping[str, Any], name: str) -> list[ImageFile]:
    value = body.get(name)
    return [f for f in value if isinstance(f, ImageFile)] if isinstance(value, list) else []


def edit_images(body: Mapping[str, Any]) -> tuple[list[ImageFile], ImageFile | None]:
    """The images to edit (one at least) and the mask, if any."""
    images = files(body, "image")
    if not images:
        raise GatewayError(
            400, "'image' is required: upload the image to edit", "invalid_request", param="image"
        )
    masks = files(body, "mask")
    if len(masks) > 1:
        raise GatewayError(400, "'mask' must be one image", "invalid_request", param="mask")
    return images, masks[0] if masks else None


def no_images(provider: str, reason: str | None) -> GatewayError:
    """An answer without images: the provider filtered the prompt or the images (OpenAI's 400)."""
    why = f": {reason}" if reason else ""
    return GatewayError(400, f"the {provider} provider returned no image{why}", "content_policy_violation")


def images_answer(
    images: list[tuple[str, str | None]],
    ctx: CallContext,
    revised: list[str | None] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenAI's ImagesResponse from (base64 data, MIME type) pairs."""
    data: list[dict[str, Any]] = []
    for i, (b64, _mime) in enumerate(images):
        item: dict[str, Any] = {"b64_json": b64}
        prompt = revised[i] if revised and i < len(revised) else None
        if prompt:
            item["revised_prompt"] = prompt
        data.append(item)
    out: dict[str, Any] = {"created": ctx.created, "data": data}
    formats = {MIME_FORMATS.get(mime or "") for _, mime in images}
    if len(formats) == 1 and None not in formats:
        out["output_format"] = formats.pop()
    if usage is not None:
        out["usage"] = usage
    return out


def usage_of(answer: Mapping[str, Any]) -> Usage | None:
    """An ImagesResponse's ``usage`` (input/output tokens) as the gateway's usage."""
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = usage.get("total_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total if isinstance(total, int) else prompt + completion,
    )
