"""OpenAI's images API on Bedrock InvokeModel, both ways, by model family (AWS's model parameter
docs): Amazon Titan Image Generator and Nova Canvas (``taskType`` TEXT_IMAGE, INPAINTING,
IMAGE_VARIATION with ``imageGenerationConfig``; answers ``{"images": [base64...]}``), and
Stability (``prompt``, ``aspect_ratio``, ``output_format``; the inpaint service for edits;
answers ``{"images", "seeds", "finish_reasons"}``). Signed with SigV4 like every Bedrock call.

Registered on the bedrock wire format through ``MORE_ROUTES`` (transforms/registry.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.common import refuse
from transforms.image_fields import (
    IMAGE_EDITS,
    IMAGE_GENERATIONS,
    NEUTRAL,
    aspect_ratio,
    check,
    count_of,
    dimensions,
    edit_images,
    images_answer,
    no_images,
    prompt_of,
)
from transforms.providers.bedrock import PROVIDER, base_model, model_family, model_path
from transforms.types import CallContext, Json, ProviderRequest, RouteTransform

# Titan/Nova imageGenerationConfig.quality for OpenAI's quality values ("auto": the model's default).
AMAZON_QUALITY = {"standard": "standard", "hd": "premium"}
# Stability's aspect_ratio and output_format values.
STABILITY_RATIOS = frozenset({"16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21"})
STABILITY_FORMATS = frozenset({"png", "jpeg", "webp"})

_AMAZON_NEUTRAL = {
    **NEUTRAL,
    "quality": (lambda v: v in ("auto", *AMAZON_QUALITY), "must be 'standard', 'hd' or 'auto' on Titan/Nova"),
}
_STABILITY_NEUTRAL = {
    **NEUTRAL,
    "n": (lambda v: v == 1, "other than 1 is not supported (Stability draws one image per call)"),
    "output_format": (lambda v: v in STABILITY_FORMATS, "must be png, jpeg or webp on Stability"),
    "mask": (
        lambda v: False,
        "is not supported on Stability (its masks are white where to paint, OpenAI's transparent: "
        "leave the area transparent in 'image' instead)",
    ),
}


def _kind(model: str) -> str:
    family = model_family(model)
    name = base_model(model)
    if family == "amazon" and ("titan-image" in name or "nova-canvas" in name):
        return "amazon"
    if family == "stability":
        return "stability"
    raise refuse(
        PROVIDER,
        "model",
        f"{model!r} is not an image model the gateway translates (Titan, Nova Canvas, Stability)",
    )


def _generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if (n := count_of(body)) is not None:
        config["numberOfImages"] = n
    if (size := dimensions(body)) is not None:
        config["width"], config["height"] = size
    if body.get("quality") in AMAZON_QUALITY:
        config["quality"] = AMAZON_QUALITY[body["quality"]]
    return config


def _amazon(body: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    config = _generation_config(body)
    return {**task, "imageGenerationConfig": config} if config else task


def _stability(body: dict[str, Any], out: dict[str, Any], sized: bool = True) -> dict[str, Any]:
    """``sized``: text-to-image, where Stability takes an ``aspect_ratio`` (an edit keeps the
    image's own)."""
    count_of(body)
    if sized and (ratio := aspect_ratio(PROVIDER, body, STABILITY_RATIOS)) is not None:
        out["aspect_ratio"] = ratio
    if body.get("output_format") is not None:
        out["output_format"] = body["output_format"]
    return out


def build_generations(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    prompt = prompt_of(body)
    if _kind(ctx.model) == "amazon":
        check(PROVIDER, body, ("n", "size"), _AMAZON_NEUTRAL)
        out = _amazon(body, {"taskType": "TEXT_IMAGE", "textToImageParams": {"text": prompt}})
    else:
        check(PROVIDER, body, ("size",), _STABILITY_NEUTRAL)
        out = _stability(body, {"prompt": prompt})
    return ProviderRequest(out, model_path(ctx.model, "invoke"))


def build_edits(body: dict[str, Any], ctx: CallContext) -> ProviderRequest:
    prompt = prompt_of(body)
    images, mask = edit_images(body)
    if _kind(ctx.model) == "amazon":
        check(PROVIDER, body, ("n", "size", "image", "mask"), _AMAZON_NEUTRAL)
        if mask is not None:
            # INPAINTING: one image, the mask passed as the client drew it (see the README on masks).
            if len(images) > 1:
                raise refuse(PROVIDER, "image", "with a mask must be one image (Titan/Nova inpaint one)")
            task = {
                "taskType": "INPAINTING",
                "inPaintingParams": {"image": images[0].b64, "text": prompt, "maskImage": mask.b64},
            }
        else:
            task = {
                "taskType": "IMAGE_VARIATION",
                "imageVariationParams": {"images": [image.b64 for image in images], "text": prompt},
            }
        out = _amazon(body, task)
    else:
        if "inpaint" not in base_model(ctx.model):
            raise refuse(
                PROVIDER, "model", f"{ctx.model!r} cannot edit: Stability edits use its inpaint service"
            )
        neutral = {
            **_STABILITY_NEUTRAL,
            "size": (lambda v: v == "auto", "is not supported on Stability edits"),
        }
        check(PROVIDER, body, ("image",), neutral)
        if len(images) > 1:
            raise refuse(PROVIDER, "image", "must be one image on Stability")
        out = _stability(body, {"image": images[0].b64, "prompt": prompt}, sized=False)
    return ProviderRequest(out, model_path(ctx.model, "invoke"))


def parse_images(body: Json, ctx: CallContext) -> Json:
    if not isinstance(body, dict):
        raise ValueError("the bedrock response is not a JSON object")
    images = [image for image in body.get("images") or () if isinstance(image, str) and image]
    if not images:
        reasons = [r for r in body.get("finish_reasons") or () if isinstance(r, str)]
        error = body.get("error")
        raise no_images(PROVIDER, error if isinstance(error, str) and error else "; ".join(reasons) or None)
    return images_answer([(image, None) for image in images], ctx)


MORE_ROUTES = {
    PROVIDER: {
        IMAGE_GENERATIONS: RouteTransform(build_generations, parse_images),
        IMAGE_EDITS: RouteTransform(build_edits, parse_images),
    }
}
