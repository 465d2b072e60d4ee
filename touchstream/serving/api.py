"""The customer API listener (TOUCHSTREAM_WEB_HOST/_WEB_PORT): the single customer view behind
bearer tokens with scopes, a rate limit per token, optional TLS and mutual TLS, and an audit
log of every profile read. The operations endpoints (/metrics, /healthz, /readyz) are on the
other listener (serving/http.py); no customer data is served there.

Routes (described in serving/openapi.json, served at GET /openapi.json):
    GET  /customers/{customer_id}   scope profile:read
    POST /customers/lookup          scope lookup, {"kind": ..., "value": ...} in a JSON body
    GET  /customers/lookup          development only (the identifier would sit in URLs); 405
                                    outside it, and for every other method
"""

from __future__ import annotations

import logging
import ssl
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from touchstream.config.rules import IDENTIFIER_KINDS
from touchstream.config.settings import key
from touchstream.errors import ConfigError, PoisonEvent
from touchstream.serving import tokens
from touchstream.serving.keys import alias_key, decode_profile, is_tombstone, profile_key

if TYPE_CHECKING:
    from touchstream.config.settings import Settings
    from touchstream.domain.identity import IdentityNormaliser

# merges only ever point at a stronger profile, so chains are short; this bounds a bad store
MAX_REDIRECTS = 16
# a lookup body is a kind and one identifier: anything larger is refused before parsing
MAX_BODY_BYTES = 4096
AUDIT_LOGGER = "touchstream.audit"
PROFILE_ENDPOINT = "GET /customers/{customer_id}"
LOOKUP_ENDPOINT = "POST /customers/lookup"
LOOKUP_GET_ENDPOINT = "GET /customers/lookup"
GET_LOOKUP_REFUSED = (
    "GET /customers/lookup is refused outside development: the identifier would sit in URLs, "
    'proxy and access logs. Send POST /customers/lookup with {"kind": ..., "value": ...} '
    "as a JSON body."
)
LOOKUP_IS_POST = (
    'lookups are POST /customers/lookup with {"kind": ..., "value": ...} as a JSON body'
)
log = logging.getLogger(__name__)
UNAVAILABLE = "the profile store is unavailable"


def openapi_document() -> dict[str, Any]:
    text = resources.files("touchstream.serving").joinpath("openapi.json").read_bytes()
    doc: dict[str, Any] = orjson.loads(text)
    return doc


@dataclass(frozen=True)
class Principal:
    id: str
    name: str


def audit_logger(path: str) -> logging.Logger:
    """The audit log: one JSON object a line, to ``path`` (appended) or to stderr."""
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler = (
        logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.api_ssl_certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.api_ssl_certfile, settings.api_ssl_keyfile)
    if settings.api_ssl_cafile:
        context.load_verify_locations(settings.api_ssl_cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class CustomerApi:
    def __init__(self, settings: Settings, redis: Any, normaliser: IdentityNormaliser) -> None:
        self.settings = settings
        self.redis = redis
        self.normaliser = normaliser
        self.tokens = tokens.TokenCache(
            lambda: tokens.load_records(redis), settings.api_token_cache_s
        )
        self.limiter = tokens.RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
        self.audit = audit_logger(settings.api_audit_log)
        try:  # at start-up, so that a bad certificate stops the worker in one line
            self.ssl_context = server_ssl_context(settings)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                key("api_ssl_certfile"), f"cannot load the TLS files: {exc}"
            ) from None
        # true once the listener accepts connections: /readyz reports it (customer_api)
        self.serving = False
        self._runner: web.AppRunner | None = None
        self._pruned_for: object = None

    # -- the aiohttp application ----------------------------------------------------------

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        # /customers/lookup before /customers/{customer_id}, which would take it as an id
        app.router.add_post("/customers/lookup", self.lookup_post)
        # every other method: 405 naming the POST form (GET still answers in development)
        app.router.add_route("*", "/customers/lookup", self.lookup_other)
        app.router.add_get("/customers/{customer_id}", self.profile, allow_head=False)
        app.router.add_get("/openapi.json", self.openapi, allow_head=False)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.settings.web_host,
            self.settings.web_port,
            ssl_context=self.ssl_context,
        )
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "the customer API cannot listen on %s:%s: %s (the worker is not ready)",
                self.settings.web_host,
                self.settings.web_port,
                exc,
            )
            return
        self.serving = True

    async def stop(self) -> None:
        self.serving = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document())

    async def profile(self, request: web.Request) -> web.Response:
        who, refused = await self._authorize(request, tokens.PROFILE_READ)
        if refused is not None or who is None:
            return self._audited(
                refused or _error(401, "unauthorized"), PROFILE_ENDPOINT, who, None
            )
        customer_id = request.match_info["customer_id"]
        try:
            profile = await resolve(self.redis, customer_id)
        except RedisError:
            return self._audited(_error(503, UNAVAILABLE), PROFILE_ENDPOINT, who, None)
        if profile is None:
            answer = _error(404, "unknown customer")
            return self._audited(answer, PROFILE_ENDPOINT, who, None)
        return self._audited(_json(profile), PROFILE_ENDPOINT, who, profile)

    async def lookup_post(self, request: web.Request) -> web.Response:
        who, refused = await self._authorize(request, tokens.LOOKUP)
        if refused is not None or who is None:
            return self._audited(refused or _error(401, "unauthorized"), LOOKUP_ENDPOINT, who, None)
        try:
            body = orjson.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            answer = _error(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
            return self._audited(answer, LOOKUP_ENDPOINT, who, None)
        except orjson.JSONDecodeError:
            answer = _error(400, 'expected a JSON object {"kind": ..., "value": ...}')
            return self._audited(answer, LOOKUP_ENDPOINT, who, None)
        kind = body.get("kind") if isinstance(body, dict) else None
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(kind, str) or not isinstance(value, str):
            answer = _error(400, 'expected a JSON object {"kind": ..., "value": ...} of strings')
            return self._audited(answer, LOOKUP_ENDPOINT, who, None)
        return await self._lookup(LOOKUP_ENDPOINT, who, kind, value)

    async def lookup_other(self, request: web.Request) -> web.Response:
        if request.method != "GET" or not self.settings.development:
            why = GET_LOOKUP_REFUSED if request.method == "GET" else LOOKUP_IS_POST
            answer = _error(405, why)
            answer.headers["Allow"] = "POST"
            return answer
        who, refused = await self._authorize(request, tokens.LOOKUP)
        if refused is not None or who is None:
            return self._audited(
                refused or _error(401, "unauthorized"), LOOKUP_GET_ENDPOINT, who, None
            )
        kind = request.query.get("kind", "")
        value = request.query.get("value", "")
        return await self._lookup(LOOKUP_GET_ENDPOINT, who, kind, value)

    async def _lookup(self, endpoint: str, who: Principal, kind: str, value: str) -> web.Response:
        shown_kind = kind if kind in IDENTIFIER_KINDS else None  # never echo an unknown kind
        if kind not in IDENTIFIER_KINDS:
            answer = _error(400, f"kind must be one of {', '.join(IDENTIFIER_KINDS)}")
            return self._audited(answer, endpoint, who, None)
        # a blank, blocked or unusable value is nobody's identifier: 404 as for an unknown one
        try:
            normalised = self.normaliser.normalise_value(kind, value)
        except PoisonEvent:  # refused outright (look-alikes, foreign digits): nobody's either
            normalised = None
        try:
            found = await self.redis.get(alias_key(kind, normalised)) if normalised else None
            customer_id = found.decode() if isinstance(found, bytes) else found
            profile = await resolve(self.redis, customer_id) if customer_id else None
        except RedisError:
            return self._audited(_error(503, UNAVAILABLE), endpoint, who, None, shown_kind)
        if profile is None:
            answer = _json({"error": "unknown identifier", "kind": kind}, 404)
            return self._audited(answer, endpoint, who, None, shown_kind)
        return self._audited(_json(profile), endpoint, who, profile, shown_kind)

    # -- authentication, rate limit, audit -------------------------------------------------

    async def _authorize(
        self, request: web.Request, scope: str
    ) -> tuple[Principal | None, web.Response | None]:
        """Who asks, and the refusal to send instead of the answer (None: go ahead)."""
        if self.settings.api_auth == "none":
            who = _client_certificate(request) or Principal("anonymous", "anonymous")
        else:
            presented = tokens.bearer(request.headers.get("Authorization"))
            if presented is None:
                return None, _unauthorized("a bearer token is required (Authorization: Bearer ...)")
            try:
                records = await self.tokens.records(tokens.token_id_of(presented))
            except (RedisError, OSError):
                return None, _error(503, "the token store is unavailable")
            record = tokens.verify(presented, records)
            if record is None:
                return None, _unauthorized("the token is unknown or revoked", "invalid_token")
            if not record.allows(scope):
                answer = _error(403, f"the token lacks the scope {scope}")
                answer.headers["WWW-Authenticate"] = (
                    f'Bearer error="insufficient_scope", scope="{scope}"'
                )
                return Principal(record.id, record.name), answer
            who = Principal(record.id, record.name)
            if records is not self._pruned_for:  # a new copy: revoked tokens' buckets go
                self.limiter.forget_except(records)
                self._pruned_for = records
        wait_s = self.limiter.take(who.id)
        if wait_s > 0:
            answer = _error(429, "rate limit of this token exceeded")
            answer.headers["Retry-After"] = tokens.retry_after(wait_s)
            return who, answer
        return who, None

    def _audited(
        self,
        response: web.Response,
        endpoint: str,
        who: Principal | None,
        profile: dict[str, object] | None,
        kind: str | None = None,
    ) -> web.Response:
        """One audit line for a request to a customer endpoint: who, which customer (the
        served profile's id, only when a profile was served), when, where, the answer. No
        identifier: neither the presented value of a lookup nor an id that matched nothing."""
        entry: dict[str, object] = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "token_id": who.id if who else None,
            "token_name": who.name if who else None,
            "endpoint": endpoint,
            "customer_id": profile.get("customer_id") if profile else None,
            "status": response.status,
        }
        if kind is not None:
            entry["kind"] = kind
        self.audit.info(orjson.dumps(entry).decode())
        return response


async def resolve(redis: Any, customer_id: str) -> dict[str, object] | None:
    """The live profile of a customer id, following merges (an absorbed id, a stale alias)."""
    for _ in range(MAX_REDIRECTS):
        raw = await redis.hgetall(profile_key(customer_id))
        if not raw or is_tombstone(raw):  # erased: a versioned tombstone (serving.keys)
            return None
        profile = decode_profile(raw)
        into = profile.get("merged_into")
        if not into:
            return profile
        customer_id = str(into)
    return None


def _client_certificate(request: web.Request) -> Principal | None:
    if request.transport is None:
        return None
    cert = request.transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return Principal(f"mtls:{value}", str(value))
    return Principal("mtls", "client certificate")


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _unauthorized(message: str, error: str = "") -> web.Response:
    answer = _error(401, message)
    answer.headers["WWW-Authenticate"] = f'Bearer error="{error}"' if error else "Bearer"
    return answer
