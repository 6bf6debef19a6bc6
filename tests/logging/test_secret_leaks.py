"""Regression tests for secrets that reached log lines (security review, item 6).

Each test is one reproduced attack, run against every log_render implementation (the
``json_logs`` fixture is parametrized over native and pure): the secret must not appear in the
bytes written, and the redacted form must.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from crown_nexus import _redaction
from crown_nexus.core import _redact as error_redact
from crown_nexus.core.error import (
    InMemoryReporter,
    handle_exception,
    redact,
    register_reporter,
    unregister_reporter,
)
from crown_nexus.core.security.api_keys import generate_api_key
from crown_nexus.logging import REDACTED, Redactor, configure_logging, get_logger
from crown_nexus.logging import processors as P
from crown_nexus.settings import Settings
from tests.logging.conftest import JsonLines

SECRET = "hunter2-Zq9"
DSN = f"postgresql+asyncpg://admin:{SECRET}@db.internal:5432/app"


class LoginData(BaseModel):
    """The pydantic login form of the review's reproduction."""

    username: str
    password: str


@dataclasses.dataclass
class Credentials:
    """A dataclass holding a secret field."""

    user: str
    passphrase: str


def _assert_clean(sink: JsonLines, *secrets: str) -> None:
    raw = sink.raw()
    for secret in secrets or (SECRET,):
        assert secret.encode() not in raw, f"{secret!r} leaked: {raw!r}"


@pytest.fixture
def errors() -> Iterator[InMemoryReporter]:
    """An in-memory reporter registered beside the default logging reporter."""
    reporter = register_reporter(InMemoryReporter())
    yield reporter
    unregister_reporter(reporter)


# --------------------------------------------------------------------------- 1. handle_exception


def login(login_data: LoginData, *, capture: bool = False) -> None:
    """The review's reproduction: an error inside a login handler reported with handle_exception."""
    try:
        raise PermissionError("login failed")
    except PermissionError as e:
        handle_exception(e, capture_args=capture, user_id=login_data.username)


def test_handle_exception_does_not_capture_arguments_by_default(
    json_logs: JsonLines, errors: InMemoryReporter
) -> None:
    """handle_exception in login(login_data) reports neither the model nor its password."""
    login(LoginData(username="bob", password=SECRET))
    _assert_clean(json_logs)
    ctx = errors.recent()[-1].context
    assert ctx.function == "login" and ctx.user_id == "bob"
    assert ctx.kwargs == {}
    assert SECRET not in repr(ctx.to_dict())


def test_handle_exception_captured_arguments_are_redacted(
    json_logs: JsonLines, errors: InMemoryReporter
) -> None:
    """With capture_args=True the model is captured as a dict whose password is redacted."""
    login(LoginData(username="bob", password=SECRET), capture=True)
    _assert_clean(json_logs)
    ctx = errors.recent()[-1].context
    assert ctx.kwargs["login_data"] == {"username": "bob", "password": REDACTED}
    line = json_logs.last()
    assert line["error_context"]["kwargs"]["login_data"]["password"] == REDACTED


# --------------------------------------------------------------------------- 2. URL credentials


def test_dsn_password_in_exception_message_is_scrubbed(json_logs: JsonLines) -> None:
    """A DSN in an exception message (and its cause) loses its password in the log line."""
    try:
        try:
            raise OSError(f"connect to {DSN} refused")
        except OSError as cause:
            raise RuntimeError(f"database unavailable: {DSN}") from cause
    except RuntimeError:
        get_logger("db").exception("db down", dsn=DSN)
    _assert_clean(json_logs)
    line = json_logs.last()
    assert "admin:[REDACTED]@db.internal" in line["dsn"]
    assert "admin:[REDACTED]@db.internal" in line["exception"]["message"]
    assert "admin:[REDACTED]@db.internal" in line["exception"]["chain"][0]["message"]


def test_dsn_password_in_error_reports_is_scrubbed(
    json_logs: JsonLines, errors: InMemoryReporter
) -> None:
    """handle_exception with a DSN in the message: the log line and the report's message are clean."""
    try:
        raise ConnectionError(f"could not connect to {DSN}")
    except ConnectionError as e:
        handle_exception(e, capture_args=True, target=DSN)
    _assert_clean(json_logs)
    entry = errors.recent()[-1]
    assert SECRET not in entry.message and "admin:[REDACTED]@" in entry.message
    assert entry.context.kwargs["target"].startswith("postgresql+asyncpg://admin:[REDACTED]@")
    assert json_logs.last()["error"].endswith("admin:[REDACTED]@db.internal:5432/app")


def test_console_traceback_is_scrubbed(configure: Any) -> None:
    """The development console's traceback text loses the DSN password too."""
    stream = io.StringIO()
    configure(Settings(ENVIRONMENT="test"), stream=stream, log_format="console", stdlib=False)
    try:
        raise OSError(f"connect to {DSN} refused")
    except OSError:
        get_logger("db").exception("db down")
    text = stream.getvalue()
    assert "OSError" in text and "admin:[REDACTED]@db.internal" in text
    assert SECRET not in text


# --------------------------------------------------------------------------- 3. one key list


@pytest.mark.parametrize("key", ["pwd", "pw", "passphrase", "user_pin", "credentials", "card"])
def test_keys_known_to_error_reports_are_redacted_in_logs(json_logs: JsonLines, key: str) -> None:
    """Keys the error redactor knew (pwd, pw, passphrase, ...) are redacted in log lines too."""
    get_logger("keys").info("k", **{key: SECRET, "company": "acme"})
    _assert_clean(json_logs)
    assert json_logs.last()[key] == REDACTED
    assert json_logs.last()["company"] == "acme"


KEY_CORPUS = [
    "password", "passwd", "passphrase", "pwd", "pw", "pass", "pin", "pan", "card", "cvc", "cvv",
    "user_pin", "pin.code", "X-Api-Key", "apikey", "Authorization", "authorisation", "Set-Cookie",
    "csrf_token", "credentials", "private_key", "card_number", "card-no", "credit_card",
    "access_token", "client_secret", "new_password", "username", "company", "span", "spinner",
    "shipping", "passenger", "request_id", "keyboard", "pwdx", "discard", "path", "title",
]  # fmt: skip


@pytest.mark.parametrize("key", KEY_CORPUS)
def test_logs_and_error_reports_share_one_key_list(key: str) -> None:
    """The log Redactor and the error redactor judge every key the same (one definition)."""
    by_logs = Redactor().is_sensitive_key(key)
    by_errors = error_redact._redact({key: "v"})[key] == REDACTED
    assert by_logs == by_errors == _redaction.is_sensitive_key(key)
    assert error_redact.SENSITIVE_KEY_PATTERN is _redaction.SENSITIVE_KEY_PATTERN
    assert P.DEFAULT_REDACT_KEYS is _redaction.SENSITIVE_KEY_FRAGMENTS


# --------------------------------------------------------------------------- 4. API keys


def test_api_keys_in_free_text_are_scrubbed(json_logs: JsonLines) -> None:
    """A ck_<id>.<secret> key in a message or a field keeps its id and loses its secret."""
    key = generate_api_key("u1", "ci").api_key
    key_id, _, secret = key.partition(".")
    log = get_logger("keys")
    log.info(f"client used {key} to log in")
    log.info("request", note=f"header value {key}", short=key)
    _assert_clean(json_logs, secret)
    first, second = json_logs.lines()[-2:]
    assert first["event"] == f"client used {key_id}.[REDACTED] to log in"
    assert second["note"] == f"header value {key_id}.[REDACTED]"
    assert second["short"] == f"{key_id}.[REDACTED]"


# --------------------------------------------------------------------------- 5. key=value pairs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/login?user=bob&password={SECRET}&next=/", "/login?user=bob&password=[REDACTED]&next=/"),
        (f"username=bob&passwd={SECRET}", "username=bob&passwd=[REDACTED]"),
        (f"retry with password: {SECRET} later", "retry with password: [REDACTED] later"),
        (f'{{"token": "{SECRET}", "n": 1}}', '{"token": "[REDACTED]", "n": 1}'),
        (f"LoginData(username='bob', password='{SECRET}')",
         "LoginData(username='bob', password='[REDACTED]')"),
        ('body={\\"password\\": \\"hunter2\\"}', 'body={\\"password\\": \\"[REDACTED]\\"}'),
        ("pwd=hunter2", "pwd=[REDACTED]"),  # 11 characters: below the renderer's 13
        ("pin=1234", "pin=[REDACTED]"),
        ("pw: s3cr3t", "pw: [REDACTED]"),
        ("company=acme", "company=acme"),
    ],
)  # fmt: skip
def test_sensitive_key_value_pairs_are_scrubbed(
    json_logs: JsonLines, text: str, expected: str
) -> None:
    """key=value / key: value pairs with a sensitive key lose their value, as field or event."""
    log = get_logger("pairs")
    log.info("query", query=text)  # the fused renderer path (no bound fields, no context)
    log.bind(route="/login").info("query", query=text)  # the dict path
    log.info(text)
    lines = json_logs.lines()[-3:]
    assert [lines[0]["query"], lines[1]["query"], lines[2]["event"]] == [expected] * 3
    _assert_clean(json_logs, "hunter2", "1234", "s3cr3t")


# --------------------------------------------------------------------------- 6. %-style arguments


def test_positional_arguments_are_redacted(json_logs: JsonLines) -> None:
    """%-style arguments: strings scrubbed, models by key, mappings by key, the result scrubbed."""
    log = get_logger("fmt")
    log.info("login %s password=%s", "bob", SECRET)
    log.info("login %s", LoginData(username="bob", password=SECRET))
    log.info("login %(user)s %(password)s", {"user": "bob", "password": SECRET})
    log.info("connect %s", DSN)
    _assert_clean(json_logs)
    events = [line["event"] for line in json_logs.lines()[-4:]]
    assert events[0] == "login bob password=[REDACTED]"
    assert "'password': '[REDACTED]'" in events[1] and "'username': 'bob'" in events[1]
    assert events[2] == "login bob [REDACTED]"
    assert events[3] == "connect postgresql+asyncpg://admin:[REDACTED]@db.internal:5432/app"


def test_stdlib_records_are_redacted(configure: Any, render_kind: str) -> None:
    """Records of the stdlib logging module routed through the pipeline are redacted the same way."""
    sink = JsonLines()
    configure(
        Settings(ENVIRONMENT="test"),
        stream=sink.stream,
        log_format="json",
        level="info",  # the root logger keeps the level: asyncio's debug lines stay out
        render_kind=render_kind,
    )
    std = logging.getLogger("thirdparty.db")
    std.info("login %s password=%s", "bob", SECRET)
    std.info("login %(user)s %(password)s", {"user": "bob", "password": SECRET})
    std.warning("connect %s failed", DSN)
    std.info(f"token={SECRET}")
    lines = [r for r in sink.lines() if r["logger"] == "thirdparty.db"]
    _assert_clean(sink)
    assert [r["event"] for r in lines] == [
        "login bob password=[REDACTED]",
        "login bob [REDACTED]",
        "connect postgresql+asyncpg://admin:[REDACTED]@db.internal:5432/app failed",
        "token=[REDACTED]",
    ]


# --------------------------------------------------------------------------- 7. Basic auth


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Basic dXNlcjpodW50ZXIy",
        "curl -H 'Authorization: Basic dXNlcjpodW50ZXIy' https://x",
        "sent Basic dXNlcjpodW50ZXIy upstream",
        "basic dXNlcjpodW50ZXIy",
    ],
)
def test_basic_credentials_are_scrubbed(json_logs: JsonLines, text: str) -> None:
    """Basic credentials (base64 of user:password) are scrubbed like Bearer tokens."""
    log = get_logger("auth")
    log.info(text)
    log.info("headers", raw=text)
    _assert_clean(json_logs, "dXNlcjpodW50ZXIy")
    assert REDACTED in json_logs.last()["raw"]


def test_basic_in_prose_is_left_alone() -> None:
    """'basic' followed by an ordinary word is not a credential."""
    for text in ("this is basic usage of things", "Basic settings were applied ok"):
        assert P.scrub_text(text) == text


# --------------------------------------------------------------------------- 8. models as fields


def test_models_and_dataclasses_are_redacted_by_field(json_logs: JsonLines) -> None:
    """pydantic models and dataclasses are turned into dicts before redaction, at any depth."""
    get_logger("models").info(
        "login",
        data=LoginData(username="bob", password=SECRET),
        creds=Credentials(user="bob", passphrase=SECRET),
        many=[LoginData(username="ann", password=SECRET)],
    )
    _assert_clean(json_logs)
    line = json_logs.last()
    assert line["data"] == {"username": "bob", "password": REDACTED}
    assert line["creds"] == {"user": "bob", "passphrase": REDACTED}
    assert line["many"] == [{"username": "ann", "password": REDACTED}]


def test_models_in_error_context_are_redacted(errors: InMemoryReporter) -> None:
    """A model or dataclass in error context is redacted by field before any reporter sees it."""
    out = redact(
        {"form": LoginData(username="bob", password=SECRET), "c": Credentials("u", SECRET)}
    )
    assert out == {
        "form": {"username": "bob", "password": REDACTED},
        "c": {"user": "u", "passphrase": REDACTED},
    }


def test_odd_objects_render_as_scrubbed_text(json_logs: JsonLines) -> None:
    """Objects whose text holds a secret (bytes, str subclasses, custom __str__) are scrubbed."""

    class Conn:
        def __str__(self) -> str:
            return f"Conn({DSN})"

    class Name(str):
        pass

    get_logger("odd").info(
        "odd", conn=Conn(), raw=f"token={SECRET}".encode(), name=Name(f"password={SECRET}")
    )
    _assert_clean(json_logs)
    line = json_logs.last()
    assert line["conn"] == "Conn(postgresql+asyncpg://admin:[REDACTED]@db.internal:5432/app)"
    assert line["raw"] == "token=[REDACTED]" and line["name"] == "password=[REDACTED]"


def test_renderers_agree_on_redacted_lines(configure: Any) -> None:
    """Native and pure renderers write the same bytes for the redacted attack lines."""
    from tests.conftest import implementations_of

    outputs = []
    for kind in implementations_of("log_render"):
        stream = io.BytesIO()
        configure(
            Settings(ENVIRONMENT="test"),
            stream=stream,
            log_format="json",
            render_kind=kind,
            stdlib=False,
        )
        from crown_nexus.testing import freeze_time

        with freeze_time():
            get_logger("agree").info(
                f"login with {DSN}",
                query="pwd=hunter2",
                data=LoginData(username="bob", password=SECRET),
                hdr="Authorization: Basic dXNlcjpodW50ZXIy",
            )
        outputs.append(
            [(k, v) for k, v in orjson.loads(stream.getvalue()).items() if k != "lineno"]
        )
    assert all(o == outputs[0] for o in outputs)
    assert SECRET not in repr(outputs[0])
    configure_logging(Settings(ENVIRONMENT="test"))


# --------------------------------------------------------------------------- over HTTP


async def test_http_login_failure_leaks_nothing(json_logs: JsonLines, tmp_path: Any) -> None:
    """Over HTTP (demo app): a login handler that reports and then fails with a DSN in the
    message logs neither the submitted password nor the DSN password."""
    from crown_nexus.core.error import wait_for_reports
    from crown_nexus.demo.app import create_app
    from crown_nexus.testing import app_client

    app = create_app(
        Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/leak.db",
            secret_key="secret-leak-test-0123456789abcdef0123",
        )
    )

    async def leaky_login(login_data: LoginData) -> None:
        try:
            raise PermissionError(f"auth backend {DSN} rejected {login_data.username}")
        except PermissionError as e:
            handle_exception(e, user_id=login_data.username)
            raise RuntimeError(f"login failed: password={login_data.password}") from e

    app.add_api_route("/leaky-login", leaky_login, methods=["POST"])
    async with app_client(app) as client:
        resp = await client.post(
            "/leaky-login", json={"username": "bob", "password": "Pw-" + SECRET}
        )
        await wait_for_reports()
    assert resp.status_code == 500
    assert SECRET not in resp.text
    _assert_clean(json_logs)
    raw = json_logs.raw().decode()
    assert "admin:[REDACTED]@db.internal" in raw  # the report was logged, scrubbed
    assert "password=[REDACTED]" in raw
