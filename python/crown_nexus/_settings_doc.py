"""The README's table of every setting, generated from :class:`crown_nexus.settings.Settings`.

``python -m crown_nexus._settings_doc`` prints the table; ``--write README.md`` replaces the
block between the :data:`BEGIN` and :data:`END` markers. A test keeps the README in step
(``tests/tooling/test_settings_table.py``). The description of a field is its own ``#:`` comment
in ``settings.py``, else :data:`DESCRIPTIONS`.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic_core import PydanticUndefined

from crown_nexus import settings as settings_module
from crown_nexus.settings import Settings

__all__ = ["BEGIN", "DESCRIPTIONS", "END", "env_names", "field_descriptions", "render_table"]

BEGIN = "<!-- settings-table:begin (python -m crown_nexus._settings_doc --write README.md) -->"
END = "<!-- settings-table:end -->"

#: fields without a ``#:`` comment in settings.py
DESCRIPTIONS: dict[str, str] = {
    "ENVIRONMENT": "`development`, `production` or `test`: production logs JSON, hides error "
    "details and the docs, and requires a secret key",
    "app_name": "the application's name (logs, default trace service name)",
    "debug": "debug mode",
    "log_level": "the root log level",
    "log_buffered": "buffer log lines and write them in batches",
    "impl": "`auto` uses the compiled twins when built; `pure` forces pure Python",
    "secret_key": "signs tokens, CSRF tokens and cursors (production: at least 32 characters)",
    "jwt_algorithm": "the JWT signing algorithm (HS256, EdDSA, ES256)",
    "access_token_expire_minutes": "access token lifetime (minutes)",
    "refresh_token_expire_days": "refresh token lifetime (days)",
    "jwt_issuer": "the `iss` claim issued and required",
    "jwt_audience": "the `aud` claim issued and required",
    "jwt_leeway_seconds": "clock skew tolerated on `exp`/`nbf` (seconds)",
    "encryption_keys": "encryption keys (JSON list; the first encrypts, all decrypt)",
    "trusted_proxies": "JSON list of proxy addresses/CIDRs whose `X-Forwarded-For` is believed "
    "(rate limiting, login throttle, audit)",
    "cors_origins": "JSON list of origins granted CORS (none: no CORS middleware)",
    "database_url": "the SQLAlchemy async database URL",
    "CACHE_DEFAULT_BACKEND": "`memory`, `redis` or `null`",
    "CACHE_DEFAULT_TTL": "cache entry lifetime (seconds)",
    "REDIS_HOST": "Redis host (when `CACHE_DEFAULT_BACKEND=redis` and no `REDIS_URI`)",
    "REDIS_PORT": "Redis port",
    "REDIS_DB": "Redis database number",
    "REDIS_PASSWORD": "Redis password",
    "REDIS_URI": "the Redis URL; when set, Redis backs the cache, rate limits, idempotency...",
    "rate_limit_fail_open": "when the rate limit backend is down: admit (true) or answer 503",
    "event_backend": "`memory` or `celery`",
    "celery_broker_url": "the Celery broker (with `EVENT_BACKEND=celery`)",
    "metrics_enabled": "false: no MetricsMiddleware, `/metrics` answers 404",
    "max_header_bytes": "one request header (name + value) larger than this answers 431",
    "max_total_header_bytes": "all request headers together larger than this answers 431",
    "max_body_sizes": "JSON object of path prefix -> body cap (bytes), e.g. "
    '`{"/documents": 52428800}`; the longest matching prefix wins over `MAX_BODY_SIZE`',
    "cors_allow_methods": "JSON list of methods a CORS preflight grants",
    "cors_allow_headers": "JSON list of request headers a CORS preflight grants",
    "cors_max_age": "how long a browser may cache a CORS preflight (seconds)",
    "compression_level": "the zlib level of gzip responses (1 fastest ... 9 smallest)",
    "login_throttle_account_threshold": "failed logins of one account from any network before "
    "its backoff starts",
    "login_throttle_base_delay": "the first login backoff delay (seconds; doubles per failure)",
    "login_throttle_max_delay": "the longest login backoff delay (seconds)",
    "login_throttle_window": "how long a failed login is remembered (seconds)",
    "idempotency_ttl_seconds": "how long a response to an Idempotency-Key is kept (seconds)",
    "idempotency_store": "`auto` (Redis when configured, else memory), `memory` or `redis`",
}


def env_names(name: str, field: Any) -> list[str]:
    """The environment variable names of a field, the preferred one first."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices if str(choice).upper() == str(choice)]
    return [name.upper()]


def field_descriptions() -> dict[str, str]:
    """Each field's own ``#:`` comment from settings.py (the lines right above it)."""
    source = inspect.getsource(settings_module)
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings"
    )
    found: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        comment: list[str] = []
        row = node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        if comment:
            found[node.target.id] = " ".join(comment).replace("``", "`")
    return found


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):
        return "(unset)" if not value.get_secret_value() else "(secret)"
    if value is None:
        return "(unset)"
    if hasattr(value, "value"):
        value = value.value
    if isinstance(value, list | dict | bool):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def render_table() -> str:
    """The Markdown table: variable(s), default, meaning; one row per ``Settings`` field."""
    described = field_descriptions()
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        names = ", ".join(f"`{env}`" for env in env_names(name, field))
        text = described.get(name) or DESCRIPTIONS.get(name, "")
        if not text:
            raise ValueError(f"setting {name} has no description: add a #: comment")
        escaped = text.replace("|", "\\|")
        rows.append(f"| {names} | {_default(field)} | {escaped} |")
    return "\n".join(rows) + "\n"


def replace_block(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError("the README has no settings table markers")
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(argv: list[str]) -> int:
    """Print the table, or with ``--write PATH`` put it into that file between the markers."""
    table = render_table()
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_block(path.read_text(encoding="utf-8"), table), encoding="utf-8")
        return 0
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
