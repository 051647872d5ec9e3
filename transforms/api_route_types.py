"""The route types of OpenAI's own REST and audio APIs (Kong's names): files, batches, assistants
(with threads), speech, transcriptions and translations. They are served on openai and azure only,
forwarded with the route's credential and URL rules (``transforms/openai_apis.py``).

No imports: ``transforms/config.py`` reads these names to validate routes.
"""

from __future__ import annotations

from typing import Literal

FILES = "llm/v1/files"
BATCHES = "llm/v1/batches"
ASSISTANTS = "llm/v1/assistants"
SPEECH = "audio/v1/audio/speech"
TRANSCRIPTIONS = "audio/v1/audio/transcriptions"
TRANSLATIONS = "audio/v1/audio/translations"

OpenAIApiRouteType = Literal[
    "llm/v1/files",
    "llm/v1/batches",
    "llm/v1/assistants",
    "audio/v1/audio/speech",
    "audio/v1/audio/transcriptions",
    "audio/v1/audio/translations",
]
OPENAI_API_ROUTE_TYPES = frozenset({FILES, BATCHES, ASSISTANTS, SPEECH, TRANSCRIPTIONS, TRANSLATIONS})
# REST collections among them: ``match.path`` names the collection and the route serves what lies below.
OPENAI_API_COLLECTIONS = frozenset({FILES, BATCHES, ASSISTANTS})
OPENAI_API_PROVIDERS = ("openai", "azure")


def openai_api_route_problem(route_type: str, provider: str, param_location: str | None) -> str | None:
    """Why a route of one of these route types cannot be served, or None."""
    if route_type not in OPENAI_API_ROUTE_TYPES:
        return None
    if provider not in OPENAI_API_PROVIDERS:
        return f"route_type '{route_type}' is served on the openai and azure providers only, not {provider}"
    if param_location == "body":
        return (
            f"auth.param_location 'body' cannot be used with route_type '{route_type}' "
            "(its bodies are multipart, binary or passed as sent): use a header or a query parameter"
        )
    return None
