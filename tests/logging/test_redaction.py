"""Secrets never reach the log line: keys, nested values, bearer tokens, card numbers."""

from __future__ import annotations

import io

import orjson
from starlette.datastructures import Headers

from crown_nexus.logging import REDACTED, Redactor, get_logger
from crown_nexus.settings import Settings


def test_secret_keys_are_redacted(json_logs) -> None:
    """password, token, secret, authorization, api_key, cookie, csrf keys are redacted."""
    get_logger("auth").info(
        "User authentication",
        username="ann",
        password="hunter2",
        access_token="abc",
        refresh_token="def",
        client_secret="s3",
        Authorization="Basic xyz",
        api_key="k",
        apikey="k2",
        cookie="sid=1",
        csrf_token="c",
        passwd="p",
    )
    rec = json_logs.last()
    assert rec["username"] == "ann"
    for key in (
        "password",
        "access_token",
        "refresh_token",
        "client_secret",
        "Authorization",
        "api_key",
        "apikey",
        "cookie",
        "csrf_token",
        "passwd",
    ):
        assert rec[key] == REDACTED, key
    assert b"hunter2" not in json_logs.raw()


def test_nested_containers_are_redacted_recursively(json_logs) -> None:
    """Secrets inside dicts, lists and header mappings are redacted; other values survive."""
    headers = Headers(
        {"authorization": "Bearer abc.def.ghi", "accept": "json", "set-cookie": "a=b"}
    )
    get_logger("nested").info(
        "request",
        body={"user": {"name": "ann", "password": "pw", "tokens": [1, 2]}},
        items=[{"secret": 1, "ok": 2}],
        headers=headers,
    )
    rec = json_logs.last()
    assert rec["body"]["user"] == {"name": "ann", "password": REDACTED, "tokens": REDACTED}
    assert rec["items"] == [{"secret": REDACTED, "ok": 2}]
    assert rec["headers"]["authorization"] == REDACTED
    assert rec["headers"]["set-cookie"] == REDACTED
    assert rec["headers"]["accept"] == "json"


def test_values_that_look_like_secrets_are_redacted(json_logs) -> None:
    """Bearer tokens, JWTs and Luhn-valid card numbers inside strings are replaced."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU"
    get_logger("values").info(
        "paid with 4111 1111 1111 1111 today",
        header="Bearer abcdefghijklmnop",
        note=f"token was {jwt}",
        order_ref="1234567890123456",  # not Luhn-valid: kept
        card="5500-0000-0000-0004",
    )
    rec = json_logs.last()
    assert rec["event"] == "paid with [REDACTED] today"
    assert rec["header"] == REDACTED
    assert rec["note"] == "token was [REDACTED]"
    assert rec["order_ref"] == "1234567890123456"
    assert rec["card"] == REDACTED


def test_redaction_is_configurable(configure) -> None:
    """configure_logging can add keys (e.g. ssn) and remove default ones (e.g. cookie)."""
    stream = io.BytesIO()
    configure(
        Settings(ENVIRONMENT="test"),
        stream=stream,
        log_format="json",
        redact_add=["ssn"],
        redact_remove=["cookie"],
    )
    get_logger("cfg").info("x", ssn="123-45-6789", cookie="visible", password="pw")
    rec = orjson.loads(stream.getvalue())
    assert rec["ssn"] == REDACTED
    assert rec["cookie"] == "visible"
    assert rec["password"] == REDACTED


def test_redactor_does_not_mutate_the_callers_objects() -> None:
    """Redaction copies containers: the caller's dict keeps its secret."""
    payload = {"password": "pw", "inner": {"token": "t"}}
    out = Redactor()(None, "info", {"payload": payload})
    assert out["payload"] == {"password": REDACTED, "inner": {"token": REDACTED}}
    assert payload == {"password": "pw", "inner": {"token": "t"}}


def test_redactor_key_matching_rules() -> None:
    """Keys match case-insensitively, '-' as '_', anywhere in the key; unrelated keys don't."""
    r = Redactor()
    assert r.is_sensitive_key("X-API-Key")
    assert r.is_sensitive_key("new_password")
    assert r.is_sensitive_key("Set-Cookie")
    assert not r.is_sensitive_key("username")
    assert not r.is_sensitive_key("request_id")
    assert not Redactor(remove=["token"]).is_sensitive_key("token")
