"""OpenAI's images API on Gemini, both ways: Imagen models through ``:predict`` (``instances`` /
``parameters``, answers in ``predictions[].bytesBase64Encoded``), every other model (the Gemini
image models) through ``generateContent`` with ``responseModalities`` TEXT and IMAGE, the images
coming back as ``inlineData`` parts. Field names as google-genai writes them
(``_GenerateImagesParameters_to_vertex``, ``_GeneratedImage_from_vertex``, ``ImageConfig``).

Registered on the gemini wire format through ``MORE_ROUTES`` (transforms/registry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.common import refuse
from transforms.image_fields import (
    IMAGE_EDITS,
    IMAGE_GENERATIONS,
    NEUTRAL,
    check,
    count_of,
    edit_images,
    images_answer,
    no_images,
    prompt_of,
)
from transforms.image_fields import aspect_ratio as _aspect_ratio
from transforms.providers.gemini import PROVIDER, block_reason, model_path, parts_of
from transforms.types import CallContext, Json, ProviderRequest, RouteTransform

# Imagen's aspectRatio values, and the Gemini image models' imageConfig.aspectRatio values.
IMAGEN_RATIOS = frozenset({"1:1", "3:4", "4:3", "9:16", "16:9"})
GEMINI_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
# Imagen's outputOptions.mimeType.
IMAGEN_FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}


def is_imagen(model: str) -> bool:
    return model.removeprefix("models/").startswith("imagen")


def _aspect(body: Mapping[str, Any], allowed: frozenset[str]) -> str | None:
    return _aspect_ratio(PROVIDER, body, allowed)


def _imagen_request(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    fmt = body.get("output_format")
    neutral = {
        **NEUTRAL,
        "output_format": (lambda v: v in IMAGEN_FORMATS, "other than png or jpeg is not supported by Imagen"),
    }
    check(PROVIDER, body, ("n", "size", "output_compression"), neutral)
    parameters: dict[str, Any] = {}
    if (n := count_of(body)) is not None:
        parameters["sampleCount"] = n
    if (ratio := _aspect(body, IMAGEN_RATIOS)) is not None:
        parameters["aspectRatio"] = ratio
    options: dict[str, Any] = {}
    if fmt is not None:
        options["mimeType"] = IMAGEN_FORMATS[fmt]
    if body.get("output_compression") is not None:
        options["compressionQuality"] = body["output_compression"]
    if options:
        parameters["outputOptions"] = options
    out: dict[str, Any] = {"instances": [{"prompt": prompt_of(body)}]}
    if parameters:
        out["parameters"] = parameters
    return ProviderRequest(out, model_path(ctx, "predict"))


def _generate_content(
    body: dict[str, Any], ctx: CallContext, images: list[dict[str, Any]]
) -> ProviderRequest:
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if (n := count_of(body)) is not None:
        config["candidateCount"] = n
    if (ratio := _aspect(body, GEMINI_RATIOS)) is not None:
        config["imageConfig"] = {"aspectRatio": ratio}
    parts = [{"text": prompt_of(body)}, *images]
    return ProviderRequest(
        {"contents": [{"role": "user", "parts": parts}], "generationConfig": config},
        model_path(ctx, "generateContent"),
    )


def build_generations(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    if is_imagen(ctx.model):
        return _imagen_request(body, ctx)
    check(PROVIDER, body, ("n", "size"))
    return _generate_content(body, ctx, [])


def build_edits(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    if is_imagen(ctx.model):
        raise refuse(PROVIDER, "model", "(Imagen) cannot edit on this route: use a Gemini image model")
    # A Gemini image model edits from the prompt: it takes no mask (the area is said in words).
    no_mask = {
        **NEUTRAL,
        "mask": (
            lambda v: False,
            "is not supported (Gemini image models take no mask: say in the prompt what to change)",
        ),
    }
    check(PROVIDER, body, ("n", "size", "image"), no_mask)
    images, _ = edit_images(body)
    inline = [{"inlineData": {"mimeType": image.mime, "data": image.b64}} for image in images]
    return _generate_content(body, ctx, inline)


def _modality_tokens(details: Any) -> dict[str, int]:
    """``promptTokensDetails`` / ``candidatesTokensDetails`` ([{modality, tokenCount}]) as
    OpenAI's ``text_tokens`` and ``image_tokens``."""
    out = {"text_tokens": 0, "image_tokens": 0}
    for item in details if isinstance(details, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("tokenCount"), int):
            continue
        key = {"TEXT": "text_tokens", "IMAGE": "image_tokens"}.get(item.get("modality"))
        if key:
            out[key] += item["tokenCount"]
    return out


def _usage(meta: Any) -> dict[str, Any] | None:
    if not isinstance(meta, dict) or not isinstance(meta.get("promptTokenCount"), int):
        return None
    prompt = meta["promptTokenCount"]
    output = (meta.get("candidatesTokenCount") or 0) + (meta.get("thoughtsTokenCount") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": _modality_tokens(meta.get("promptTokensDetails")),
        "output_tokens": output,
        "output_tokens_details": _modality_tokens(meta.get("candidatesTokensDetails")),
        "total_tokens": prompt + output,
    }


def _parse_predictions(body: dict[str, Any], ctx: CallContext) -> Json:
    images: list[tuple[str, str | None]] = []
    revised: list[str | None] = []
    reasons: list[str] = []
    for prediction in body.get("predictions") or ():
        if not isinstance(prediction, dict):
            continue
        data = prediction.get("bytesBase64Encoded")
        if isinstance(data, str) and data:
            images.append((data, prediction.get("mimeType")))
            prompt = prediction.get("prompt")  # the enhanced prompt Imagen drew from
            revised.append(prompt if isinstance(prompt, str) else None)
        elif isinstance(prediction.get("raiFilteredReason"), str):
            reasons.append(prediction["raiFilteredReason"])
    if not images:
        raise no_images(PROVIDER, "; ".join(reasons) or None)
    return images_answer(images, ctx, revised)


def _parse_candidates(body: dict[str, Any], ctx: CallContext) -> Json:
    images: list[tuple[str, str | None]] = []
    finish: list[str] = []
    for candidate in body.get("candidates") or ():
        for part in parts_of(candidate):
            inline = part.get("inlineData")
            if part.get("thought") is True or not isinstance(inline, dict):
                continue  # thinking images are drafts, not the answer
            if isinstance(inline.get("data"), str) and str(inline.get("mimeType", "")).startswith("image/"):
                images.append((inline["data"], inline.get("mimeType")))
        if isinstance(candidate, dict) and isinstance(candidate.get("finishReason"), str):
            finish.append(candidate["finishReason"])
    if not images:
        raise no_images(PROVIDER, block_reason(body) or ", ".join(r for r in finish if r != "STOP") or None)
    return images_answer(images, ctx, usage=_usage(body.get("usageMetadata")))


def parse_images(body: Json, ctx: CallContext) -> Json:
    if not isinstance(body, dict):
        raise ValueError("the gemini response is not a JSON object")
    if "predictions" in body or is_imagen(ctx.model):
        return _parse_predictions(body, ctx)
    return _parse_candidates(body, ctx)


MORE_ROUTES = {
    PROVIDER: {
        IMAGE_GENERATIONS: RouteTransform(build_generations, parse_images),
        IMAGE_EDITS: RouteTransform(build_edits, parse_images),
    }
}
