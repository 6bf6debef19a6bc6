"""An OpenAPI document that describes what the crown-nexus stack really answers.

FastAPI documents each route as if it answered alone: the bare response model, its own
``HTTPValidationError`` for 422, nothing else. Behind ``setup_app``'s middleware the answers
differ, and :func:`truthful_openapi` rewrites the generated document to say so:

* **success bodies** (2xx JSON, not 204/205, outside the formatter's ``exclude_paths``) are
  documented inside the SPEC §3 envelope ``{"success": true, "data": <model>, "meta":
  {"request_id", "timestamp"}}``, as :class:`~crown_nexus.middleware.response_formatter.
  ResponseFormatterMiddleware` sends them;
* **errors** are the SPEC §3 body (component ``ErrorBody``): 422 included, where FastAPI said
  ``HTTPValidationError``;
* **every status an operation can answer through the stack** is listed with that body: 400 (an
  attack in the URL, a malformed request), 414 and 431 (size caps), 429 (with ``Retry-After``,
  when a rate limit rule covers the path), 500, 504 (the request timeout), 408 and 413 on
  operations with a request body, 401/403 on operations with a security requirement, 403 (CSRF)
  on unsafe methods, 404 on operations with path parameters, 409/422/503 from the idempotency
  layer on POST/PATCH, 503 from a rate limiter that fails closed; plus the statuses the
  application names per operation (``extra_responses``).

A 405 is not listed: it answers a method the operation does not have (its ``Allow`` header
names the path's methods: :mod:`crown_nexus.integrations.routing`).

:func:`install_openapi` makes ``app.openapi()`` (and so ``/openapi.json``) return the rewritten
document; the parameters' bounds are FastAPI's, from the routes' ``Query``/``Path`` constraints.
"""

from __future__ import annotations

import copy
import http
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "ENVELOPE_META_SCHEMA",
    "ERROR_BODY_SCHEMA",
    "install_openapi",
    "truthful_openapi",
]

#: SPEC §3 error body, for every error the framework renders
ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "description": "SPEC §3 error body (every error status)",
    "required": ["success", "message", "code", "details", "request_id", "timestamp"],
    "properties": {
        "success": {"type": "boolean", "enum": [False]},
        "message": {"type": "string"},
        "code": {"type": "string"},
        "details": {
            "description": "validation errors (a list of {loc, msg, type}) or a detail object",
            "anyOf": [{"type": "array"}, {"type": "object"}, {"type": "null"}],
        },
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "timestamp": {"type": "string", "description": "ISO-8601 UTC"},
    },
}

#: the ``meta`` member of the success envelope
ENVELOPE_META_SCHEMA: dict[str, Any] = {
    "title": "ResponseMeta",
    "type": "object",
    "required": ["request_id", "timestamp"],
    "properties": {
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "timestamp": {"type": "string", "description": "ISO-8601 UTC"},
    },
}

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_META_REF = {"$ref": "#/components/schemas/ResponseMeta"}
_UNSAFE = frozenset({"post", "put", "patch", "delete"})
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

#: why a status can come back, by status (the ``description`` of the documented response)
_REASONS: dict[int, str] = {
    400: "Bad request: an attack pattern in the URL, a malformed request or header",
    401: "Not authenticated: missing, invalid or expired credentials",
    403: "Forbidden: missing permission, or a cookie session without its CSRF token",
    404: "Not found",
    408: "The request body did not arrive in time (CROWN_NEXUS_BODY_READ_TIMEOUT_SECONDS)",
    409: "Conflict (an Idempotency-Key request still in progress, or the resource's state)",
    413: "Request body too large (CROWN_NEXUS_MAX_BODY_SIZE / _SIZES)",
    414: "Request URL too long (CROWN_NEXUS_MAX_URL_LENGTH)",
    422: "Validation error: `details` lists each problem ({loc, msg, type})",
    429: "Rate limit exceeded; retry after `Retry-After` seconds",
    431: "Request header fields too large (CROWN_NEXUS_MAX_HEADER_BYTES / _TOTAL_HEADER_BYTES)",
    500: "Internal error (no internals are shown in production)",
    503: "A backing service (rate limiter, idempotency store, dependency) is unavailable",
    504: "The response did not start in time (CROWN_NEXUS_REQUEST_TIMEOUT_SECONDS)",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    429: {
        "Retry-After": {
            "schema": {"type": "string"},
            "description": "seconds to wait before retrying",
        }
    },
}


def _middleware(app: Any) -> dict[str, dict[str, Any]]:
    """Installed middleware of ``app``: class name -> constructor kwargs."""
    found: dict[str, dict[str, Any]] = {}
    for entry in getattr(app, "user_middleware", ()):
        cls = getattr(entry, "cls", None)
        if cls is not None:
            found[cls.__name__] = dict(getattr(entry, "kwargs", {}) or {})
    return found


def _rate_limited(path: str, options: Mapping[str, Any] | None) -> tuple[bool, bool]:
    """``(some rule covers path, the limiter fails closed)`` for the RateLimitMiddleware options."""
    if options is None:
        return False, False
    from crown_nexus.middleware.rate_limiting import DEFAULT_RULES

    rules = options.get("rules")
    rules = DEFAULT_RULES if rules is None else tuple(rules)
    covered = any(rule.matches(path) for rule in rules)
    service = options.get("service")
    if service is not None:
        fail_open = bool(getattr(service, "fail_open", True))
    else:
        settings = options.get("settings")
        fail_open = bool(getattr(settings, "rate_limit_fail_open", True))
    fails_closed = covered and not fail_open
    return covered, fails_closed


def _envelope(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data", "meta"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "data": dict(data),
            "meta": dict(_META_REF),
        },
    }


def _resolve(doc: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a local ``$ref`` followed (one level)."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = doc
    for part in ref[2:].split("/"):
        target = target.get(part, {}) if isinstance(target, Mapping) else {}
    return target if isinstance(target, Mapping) else schema


def _already_enveloped(schema: Mapping[str, Any]) -> bool:
    """A model that is itself the SPEC §3 success shape (``success`` plus ``data``/``message``
    required): the formatter sends such bodies unchanged."""
    required = set(schema.get("required") or ())
    return "success" in required and bool(required & {"data", "message"})


def _is_json(media: str) -> bool:
    media = media.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _error_response(status: int, existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    description = _REASONS.get(status, phrase)
    if existing and existing.get("description") and existing["description"] not in (
        phrase,
        "Validation Error",
        "Successful Response",
    ):
        description = str(existing["description"])
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
    }
    headers = {**_HEADERS.get(status, {}), **dict((existing or {}).get("headers") or {})}
    if headers:
        response["headers"] = headers
    return response


def _statuses(
    method: str,
    path: str,
    operation: Mapping[str, Any],
    installed: Mapping[str, Mapping[str, Any]],
) -> set[int]:
    """The error statuses the stack (and FastAPI) can answer for this operation."""
    statuses = {400, 500}
    has_body = "requestBody" in operation
    params = operation.get("parameters") or ()
    if "SecureRequestMiddleware" in installed:
        statuses |= {414, 431}
        options = installed["SecureRequestMiddleware"]
        if has_body and (options.get("max_body_size", 1) is not None or options.get("max_body_sizes")):
            statuses.add(413)
    timeout = installed.get("TimeoutMiddleware")
    if timeout is not None and not path.startswith(tuple(timeout.get("exclude_paths", ()))):
        statuses.add(504)
        if has_body and timeout.get("body_timeout_seconds") is not None:
            statuses.add(408)
    covered, fails_closed = _rate_limited(path, installed.get("RateLimitMiddleware"))
    if covered:
        statuses.add(429)
    if fails_closed:
        statuses.add(503)
    if operation.get("security"):
        statuses |= {401, 403}
    if method in _UNSAFE and "CsrfMiddleware" in installed:
        statuses.add(403)
    if any(p.get("in") == "path" for p in params):
        statuses.add(404)
    if params or has_body:
        statuses.add(422)
    idempotency = installed.get("IdempotencyMiddleware")
    if method in ("post", "patch") and idempotency is not None and idempotency.get("enabled", True):
        statuses |= {409, 422, 503}
    return statuses


def truthful_openapi(
    schema: Mapping[str, Any],
    app: Any,
    *,
    extra_responses: Mapping[str, Iterable[int]] | None = None,
) -> dict[str, Any]:
    """A copy of ``schema`` (FastAPI's document for ``app``) that tells what the stack answers.

    ``extra_responses`` maps ``"METHOD /path/template"`` to further error statuses the
    operation's own code raises (``{"GET /features/{name}": [404]}``); an unknown key raises
    ``KeyError`` so the list cannot rot silently. See the module docstring for the rules.
    """
    from crown_nexus.middleware.response_formatter import DEFAULT_EXCLUDE_PATHS

    doc = copy.deepcopy(dict(schema))
    installed = _middleware(app)
    formatter = installed.get("ResponseFormatterMiddleware")
    excluded = (
        tuple(formatter.get("exclude_paths", DEFAULT_EXCLUDE_PATHS)) if formatter is not None else ()
    )
    extras = {key: set(value) for key, value in (extra_responses or {}).items()}
    seen: set[str] = set()
    for path, item in (doc.get("paths") or {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            key = f"{method.upper()} {path}"
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for code, response in list(responses.items()):
                if not code.isdigit():
                    continue
                status = int(code)
                if status >= 400:
                    responses[code] = _error_response(status, response)
                elif (
                    formatter is not None
                    and 200 <= status < 300
                    and status not in (204, 205)
                    and not (excluded and path.startswith(excluded))
                ):
                    for media, content in (response.get("content") or {}).items():
                        if not (_is_json(media) and isinstance(content, dict)):
                            continue
                        data = content.get("schema") or {}
                        if not _already_enveloped(_resolve(doc, data)):
                            content["schema"] = _envelope(data)
            wanted = _statuses(method, path, operation, installed) | extras.get(key, set())
            if key in extras:
                seen.add(key)
            for status in sorted(wanted):
                if str(status) not in responses:
                    responses[str(status)] = _error_response(status)
            operation["responses"] = dict(sorted(responses.items()))
    unknown = set(extras) - seen
    if unknown:
        raise KeyError(f"extra_responses names operations the app does not have: {sorted(unknown)}")
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = copy.deepcopy(ERROR_BODY_SCHEMA)
    if formatter is not None:
        components["ResponseMeta"] = copy.deepcopy(ENVELOPE_META_SCHEMA)
    _drop_unused(doc, ("HTTPValidationError", "ValidationError"))
    return doc


def _drop_unused(doc: dict[str, Any], names: Iterable[str]) -> None:
    """Remove component schemas nothing refers to any more (FastAPI's 422 models)."""
    import json

    schemas = doc.get("components", {}).get("schemas", {})
    for name in names:
        if name not in schemas:
            continue
        body = dict(doc)
        others = {k: v for k, v in schemas.items() if k != name}
        body["components"] = {**doc["components"], "schemas": others}
        if f'"#/components/schemas/{name}"' not in json.dumps(body):
            del schemas[name]


def install_openapi(
    app: Any, *, extra_responses: Mapping[str, Iterable[int]] | None = None
) -> None:
    """Make ``app.openapi()`` return :func:`truthful_openapi` of FastAPI's document (cached).

    ``setup_app`` calls it; calling it again only adds ``extra_responses`` (statuses an
    operation's own code raises, ``{"GET /features/{name}": [404]}``) and drops the cache.
    """
    extras: dict[str, set[int]] = getattr(app.state, "openapi_extra_responses", None) or {}
    for key, statuses in (extra_responses or {}).items():
        extras.setdefault(key, set()).update(statuses)
    app.state.openapi_extra_responses = extras
    app.openapi_schema = None
    app.state.crown_nexus_openapi = None
    if getattr(app.state, "crown_nexus_openapi_installed", False):
        return
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        cached = app.state.crown_nexus_openapi
        if cached is None:
            app.openapi_schema = None  # FastAPI's own cache holds the raw document
            cached = truthful_openapi(
                generate(), app, extra_responses=app.state.openapi_extra_responses
            )
            app.state.crown_nexus_openapi = cached
            app.openapi_schema = cached
        return cached  # type: ignore[no-any-return]

    app.openapi = openapi
    app.state.crown_nexus_openapi_installed = True
