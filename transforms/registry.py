"""The registry of pure provider transforms, keyed by (wire format, route type).

Built once at import from every module in ``transforms.providers``: adding a provider means adding
a module that exposes ``SPECS``; nothing here changes. A module may also add route types to another
module's wire format with ``MORE_ROUTES`` ({spec name: {route type: RouteTransform}}): the images
API on gemini and bedrock lives in its own modules that way.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from transforms import providers
from transforms.config import Route
from transforms.types import ProviderSpec, RouteTransform


def _discover() -> Mapping[str, ProviderSpec]:
    specs: dict[str, ProviderSpec] = {}
    more: list[tuple[str, Mapping[str, Mapping[str, RouteTransform]]]] = []
    for info in sorted(pkgutil.iter_modules(providers.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{providers.__name__}.{info.name}")
        for spec in getattr(module, "SPECS", ()):
            if spec.name in specs:
                raise RuntimeError(f"provider spec '{spec.name}' is defined twice")
            specs[spec.name] = spec
        if hasattr(module, "MORE_ROUTES"):
            more.append((info.name, module.MORE_ROUTES))
    for module_name, by_spec in more:
        for name, routes in by_spec.items():
            spec = specs[name]
            if twice := set(routes) & set(spec.routes):
                raise RuntimeError(f"{module_name} adds route types {name} already serves: {sorted(twice)}")
            specs[name] = dataclasses.replace(spec, routes={**spec.routes, **routes})
    return MappingProxyType(specs)


SPECS: Mapping[str, ProviderSpec] = _discover()


def spec_key(route: Route) -> str:
    """The wire format a route's upstream speaks (mistral and llama2 come in several; anthropic with
    Vertex AI options is Claude on Vertex)."""
    provider = route.model.provider
    opts = route.model.options
    if provider == "mistral":
        return "ollama" if opts.mistral_format == "ollama" else "mistral"
    if provider == "anthropic" and opts.gemini is not None and opts.gemini.is_vertex:
        return "anthropic_vertex"  # Claude on Vertex AI
    if provider == "llama2":
        fmt = opts.llama2_format or "openai"
        return {"openai": "llama2", "ollama": "ollama", "raw": "llama2_raw"}[fmt]
    return provider


def spec_for(route: Route) -> ProviderSpec | None:
    return SPECS.get(spec_key(route))


def transform_for(route: Route) -> RouteTransform | None:
    spec = spec_for(route)
    return spec.routes.get(route.route_type) if spec else None
