"""SecurityService: registry, guide usage, metrics into the metrics service, security events."""

from __future__ import annotations

from typing import Any

import pytest

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security import SecurityService, TokenPair, get_security_service
from crown_nexus.testing import override_service


class RecordingEventService:
    """Collects published events (the event system's publish signature)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, event_name: str, payload: dict[str, Any], **_: Any) -> None:
        self.events.append((event_name, payload))


def test_registered_as_security_service(configured) -> None:
    """get_service("security_service", db=...) and get_security_service(db) give the shared service."""
    shared = get_security_service()
    assert get_service("security_service") is shared
    assert get_service("security_service", db=object()) is shared
    assert get_security_service(db=None) is shared
    assert isinstance(shared, SecurityService)


async def test_guide_login_flow_through_the_service(configured) -> None:
    """The guide's login example: verify_password, create_token_pair (awaited), CSRF token."""
    service = get_security_service()
    hashed = await service.hash_password("Guide-Pass-1!")
    assert await service.verify_password("Guide-Pass-1!", hashed, user_id="7")
    pair = await service.create_token_pair(
        user_id="7", role="user", permissions=["user:read"], user_data={"name": "N", "email": "e"}
    )
    assert isinstance(pair, TokenPair)
    assert (await service.decode_token(pair.access_token)).sub == "7"
    csrf = service.generate_csrf_token("7")
    assert service.validate_csrf_token(csrf, "7")
    assert not service.validate_csrf_token(csrf, "8")
    headers = service.get_security_headers()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert service.decrypt_data(service.encrypt_data({"k": "v"})) == {"k": "v"}
    assert service.detect_suspicious_content("<script>x</script>")
    assert service.moderate_content("fine text") == (True, None)
    assert service.validate_json_input({"a": 1})
    assert service.sanitize_input("<b>x</b>") == "x"


async def test_events_are_published(configured) -> None:
    """token_created, token_revoked, api_key_created and password_verification_failed are published."""
    recorder = RecordingEventService()
    service = get_security_service()
    with override_service("event_service", recorder):
        pair = await service.create_token_pair(user_id="u1")
        await service.revoke_token(pair.access_token, reason="logout")
        service.generate_api_key("u1", "ci", ["a:b"])
        hashed = await service.hash_password("Right-pass-1!")
        assert not await service.verify_password("wrong", hashed, user_id="u1")
        import asyncio

        await asyncio.sleep(0)  # let the scheduled (sync-path) publication run
        await asyncio.sleep(0)
    names = [name for name, _ in recorder.events]
    assert "security.token_created" in names
    assert "security.token_revoked" in names
    assert "security.api_key_created" in names
    assert "security.password_verification_failed" in names
    revoked = dict(recorder.events)["security.token_revoked"]
    assert revoked["user_id"] == "u1" and revoked["reason"] == "logout"
    failed = dict(recorder.events)["security.password_verification_failed"]
    assert failed["user_id"] == "u1" and "wrong" not in str(failed)


async def test_reuse_publishes_a_revocation_event(configured) -> None:
    """Refresh-token reuse publishes security.token_revoked with reason refresh_token_reuse."""
    recorder = RecordingEventService()
    service = get_security_service()
    with override_service("event_service", recorder):
        pair = await service.create_token_pair(user_id="u2")
        await service.refresh_tokens(pair.refresh_token)
        with pytest.raises(AuthenticationException):
            await service.refresh_tokens(pair.refresh_token)
    revoked = [payload for name, payload in recorder.events if name == "security.token_revoked"]
    assert len(revoked) == 1
    assert revoked[0]["user_id"] == "u2" and revoked[0]["reason"] == "refresh_token_reuse"


async def test_metrics_reach_the_metrics_service(settings, jwt_impl) -> None:
    """Validations, creations, password checks, CSRF checks and detections are counted."""
    metrics = get_service("metrics_service")
    service = SecurityService(settings, jwt_impl=jwt_impl)
    try:
        before = {
            name: metrics.get_counter_sum(name)
            for name in (
                "token_validations_total",
                "tokens_created_total",
                "password_verifications_total",
                "csrf_validations_total",
                "suspicious_content_detections_total",
                "api_keys_created_total",
            )
        }
        pair = await service.create_token_pair(user_id="m")
        await service.decode_token(pair.access_token)
        with pytest.raises(AuthenticationException):
            await service.decode_token("bad")
        await service.verify_password("x", await service.hash_password("y"))
        service.validate_csrf_token("nope", "s")
        service.detect_suspicious_content("../../etc/passwd")
        service.generate_api_key("m", "k")
        service.telemetry.flush()
        after = {name: metrics.get_counter_sum(name) for name in before}
        assert after["token_validations_total"] - before["token_validations_total"] == 2
        assert after["tokens_created_total"] - before["tokens_created_total"] == 2
        assert after["password_verifications_total"] - before["password_verifications_total"] == 1
        assert after["csrf_validations_total"] - before["csrf_validations_total"] == 1
        assert after["api_keys_created_total"] - before["api_keys_created_total"] == 1
        assert (
            after["suspicious_content_detections_total"]
            - before["suspicious_content_detections_total"]
            >= 1
        )
        assert metrics.get_counter_sum("token_validations_total", {"success": "false"}) >= 1
    finally:
        await service.close()


async def test_broken_metrics_service_never_breaks_security(settings, jwt_impl) -> None:
    """A metrics service that raises is ignored; the operation still succeeds."""

    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("metrics down")

    with override_service("metrics_service", Broken()):
        service = SecurityService(settings, jwt_impl=jwt_impl)
        pair = await service.create_token_pair(user_id="x")
        assert (await service.decode_token(pair.access_token)).sub == "x"
        service.telemetry.flush()
        await service.close()
