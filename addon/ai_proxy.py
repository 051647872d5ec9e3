"""ai-proxy: an AI gateway in one mitmproxy addon.

    mitmdump -s addon/ai_proxy.py --mode reverse:http://127.0.0.1:1 --set ai_proxy_config=routes.yaml

This file only makes sure the project's own packages are the ones imported, then registers the
addon. The logic lives in ``addon/gateway.py`` (mitmproxy glue) and ``transforms/`` (pure code).
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
_OURS = ("addon", "transforms")


def _use_project_packages() -> None:
    # mitmproxy puts only addon/ on sys.path, and PyPI has unrelated packages named `addon` and
    # `transforms`: put the project root first and forget any foreign module of those names.
    if sys.path[:1] != [_ROOT]:
        if _ROOT in sys.path:
            sys.path.remove(_ROOT)
        sys.path.insert(0, _ROOT)
    reloading = getattr(sys.modules.get("addon"), "_script_loaded", False)
    for name in list(sys.modules):
        if name.split(".", 1)[0] not in _OURS:
            continue
        origin = getattr(sys.modules[name], "__file__", None) or ""
        # On a hot reload our modules are dropped too, so an edit anywhere takes effect.
        if reloading or not origin.startswith(_ROOT):
            del sys.modules[name]


_use_project_packages()

from mitmproxy import contentviews  # noqa: E402

import addon  # noqa: E402
from addon.access import AccessControl  # noqa: E402
from addon.balancing import Balancing  # noqa: E402
from addon.batch_inputs import BatchInputs  # noqa: E402
from addon.cassettes import Cassettes  # noqa: E402
from addon.conversation_view import LLMConversationContentview  # noqa: E402
from addon.flow_masking import FlowMasking  # noqa: E402
from addon.gateway import AIProxy  # noqa: E402
from addon.ingress_endpoints import IngressEndpoints  # noqa: E402
from addon.inspection import Inspector  # noqa: E402
from addon.models import ModelsEndpoint  # noqa: E402
from addon.prompt_plugins import PromptPluginsAddon  # noqa: E402
from addon.realtime import RealtimeSessions  # noqa: E402
from addon.responses_store import ResponseKeeper, ResponseStore, StoredResponses  # noqa: E402
from addon.streamed_uploads import StreamedUploads  # noqa: E402
from addon.summary import UsageSummary  # noqa: E402
from addon.upstream_relay import UpstreamRelay  # noqa: E402

addon._script_loaded = True  # type: ignore[attr-defined]

contentviews.add(LLMConversationContentview)
gateway = AIProxy()
responses = ResponseStore()
balancing = Balancing(gateway)
access = AccessControl(gateway)
uploads = StreamedUploads(gateway, access)
# Order is hook order. Access control first: a refused request is answered before the gateway
# prepares anything. The models endpoint next: it answers GET <prefix>/v1/models before the gateway
# routes the request. FlowMasking before the gateway: in `error` it must read what was attached before
# the gateway forgets it. The gateway asks the inspector (a hook point it owns) about flows no route
# matches, and the prompt plugins (another hook point it owns; no mitmproxy hooks of their own) on
# routes that configure some. Cassettes after both: they record and replay flows the gateway (or the
# inspector) has prepared. The summary totals every statistics record. Stored Responses API answers:
# answered and continued before the gateway prepares a request, kept after it has translated the answer.
# Realtime sessions: their WebSocket messages are read for usage once the gateway has upgraded them.
# The upstream relay last in `request`: it re-points every prepared flow the cassettes do not replay at
# its loopback server, which performs the tries, and last in `responseheaders`: its ping hook wraps the
# cassettes' recording, which so records the provider's bytes only; Balancing learns from the answer
# after the gateway has recorded it.
# File uploads are prepared from their headers (StreamedUploads.requestheaders, the only such hook) and
# answered 413 after the gateway when cut; batches naming another provider's model are refused before it.
addons = [
    access,
    ModelsEndpoint(gateway),
    IngressEndpoints(gateway),
    StoredResponses(gateway, responses),
    FlowMasking(gateway),
    BatchInputs(gateway, uploads),
    gateway,
    uploads,
    ResponseKeeper(gateway, responses),
    Inspector(gateway),
    PromptPluginsAddon(gateway),
    Cassettes(gateway),
    RealtimeSessions(gateway),
    UpstreamRelay(gateway, balancing),
    balancing,
    UsageSummary(gateway.stats, balancing.health),
]
