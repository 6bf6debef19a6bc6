"""A 405's ``Allow`` header lists every method the path answers, not one route's.

Starlette answers a method no route takes with the 405 of the *first* route whose path matched:
with ``GET /products/{id}`` and ``PUT /products/{id}`` registered as two routes (as FastAPI
always does), ``DELETE /products/1`` said ``Allow: GET`` although PUT exists. RFC 9110 §15.5.6
requires ``Allow`` to list the target resource's methods. :func:`install_method_not_allowed`
replaces the 405 handler so the header is computed from every route of the app
(:func:`allowed_methods`); the body stays the SPEC §3 error body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from crown_nexus.core.exceptions import error_response, is_production_app

__all__ = ["HTTP_METHODS", "allowed_methods", "install_method_not_allowed"]

#: the methods a 405's Allow header may list, in the order it lists them
HTTP_METHODS: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Iterable[Any], scope: dict[str, Any]) -> list[str]:
    """The methods of :data:`HTTP_METHODS` some route of ``routes`` fully matches at ``scope``'s path."""
    found: list[str] = []
    candidates = list(routes)
    for method in HTTP_METHODS:
        probe = {**scope, "method": method}
        for route in candidates:
            match, _ = route.matches(probe)
            if match is Match.FULL:
                found.append(method)
                break
    return found


def install_method_not_allowed(app: Any) -> None:
    """Answer every 405 of ``app`` with an ``Allow`` header naming all the path's methods."""

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        allow = allowed_methods(request.app.router.routes, dict(request.scope))
        detail = getattr(exc, "detail", None) or "Method Not Allowed"
        fixed = HTTPException(405, detail=detail, headers={"Allow": ", ".join(allow)})
        return error_response(fixed, production=is_production_app(request.app))

    app.add_exception_handler(405, method_not_allowed)
