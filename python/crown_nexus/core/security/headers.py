"""Security response headers (OWASP Secure Headers Project recommendations)."""

from __future__ import annotations

__all__ = ["DEFAULT_CONTENT_SECURITY_POLICY", "get_security_headers"]

#: a strict default; pages that load scripts/styles from CDNs need their own policy
DEFAULT_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'"
)


def get_security_headers(
    *,
    content_security_policy: str | None = DEFAULT_CONTENT_SECURITY_POLICY,
    hsts: bool = True,
    hsts_max_age: int = 31_536_000,
    frame_options: str = "DENY",
    referrer_policy: str = "strict-origin-when-cross-origin",
    permissions_policy: str | None = "camera=(), microphone=(), geolocation=(), payment=()",
) -> dict[str, str]:
    """Return the security headers every response should carry, as ``{name: value}``.

    ``X-Content-Type-Options: nosniff``, ``X-Frame-Options``, ``Referrer-Policy``,
    ``Content-Security-Policy``, ``Strict-Transport-Security`` (when ``hsts``),
    ``Permissions-Policy``, ``Cross-Origin-Opener-Policy: same-origin`` and
    ``X-XSS-Protection: 0`` (the legacy auditor is itself an attack surface). Passing ``None``
    for an optional policy leaves that header out.
    """
    headers = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": frame_options,
        "Referrer-Policy": referrer_policy,
        "Cross-Origin-Opener-Policy": "same-origin",
        "X-XSS-Protection": "0",
    }
    if content_security_policy:
        headers["Content-Security-Policy"] = content_security_policy
    if hsts:
        headers["Strict-Transport-Security"] = f"max-age={int(hsts_max_age)}; includeSubDomains"
    if permissions_policy:
        headers["Permissions-Policy"] = permissions_policy
    return headers
