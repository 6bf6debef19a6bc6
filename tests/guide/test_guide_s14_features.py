"""Guide §14 "Feature Flags and Progressive Rollouts", run as written with the user's transport supplied."""
# ruff: noqa: I001, E402, F401, F811, E501 - the guide's block is copied verbatim (its imports and order)

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crown_nexus.core.features import FeatureService, MemoryFeatureStore
from crown_nexus.logging import get_logger  # the guide's blocks use get_logger without importing it
from crown_nexus.testing import override_service

# --- guide §14, verbatim (app.X -> crown_nexus.X) ---------------------------------------------
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.features import Flag, FeatureTarget

class NotificationService:
    def __init__(self, db):
        self.db = db
        self.logger = get_logger("app.services.notification")
        self.feature_service = get_service("feature_service")

    async def send_notification(self, user_id: str, message: str, channel: str = "email"):
        """Send a notification to a user.

        This method uses feature flags to control rollout of new channels.
        """
        self.logger.info("Sending notification", user_id=user_id, channel=channel)

        # Check if push notifications are enabled for this user
        if channel == "push" and not await self.feature_service.is_enabled(
            Flag.PUSH_NOTIFICATIONS,
            target=FeatureTarget.USER,
            target_id=user_id
        ):
            self.logger.info("Push notifications not enabled for user, falling back to email", user_id=user_id)
            channel = "email"

        # Check if we should use the new notification pipeline
        use_new_pipeline = await self.feature_service.is_enabled(
            Flag.NEW_NOTIFICATION_PIPELINE,
            target=FeatureTarget.GLOBAL
        )

        if use_new_pipeline:
            self.logger.info("Using new notification pipeline", user_id=user_id)
            result = await self._send_notification_v2(user_id, message, channel)
        else:
            result = await self._send_notification_v1(user_id, message, channel)

        # If new SMS channel is enabled, send SMS as well for important notifications
        if (
            message.startswith("IMPORTANT") and
            await self.feature_service.is_enabled(
                Flag.SMS_NOTIFICATIONS,
                target=FeatureTarget.USER,
                target_id=user_id,
                percentage=10  # Only 10% of users
            )
        ):
            self.logger.info("Sending additional SMS for important notification", user_id=user_id)
            await self._send_sms(user_id, message)

        return result
# --- end of the guide's block ---------------------------------------------------------------


class UsersNotificationService(NotificationService):
    """The user's transports (the guide leaves them to the application); records every send."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self.sent: list[tuple[str, str, str]] = []

    async def _send_notification_v1(self, user_id: str, message: str, channel: str) -> dict[str, str]:
        self.sent.append(("v1", user_id, channel))
        return {"pipeline": "v1", "channel": channel}

    async def _send_notification_v2(self, user_id: str, message: str, channel: str) -> dict[str, str]:
        self.sent.append(("v2", user_id, channel))
        return {"pipeline": "v2", "channel": channel}

    async def _send_sms(self, user_id: str, message: str) -> None:
        self.sent.append(("sms", user_id, "sms"))


@pytest.fixture
def feature_service() -> Iterator[FeatureService]:
    """A fresh feature_service (memory store) so each test starts from the defaults."""
    svc = FeatureService(store=MemoryFeatureStore(), environment="test")
    with override_service("feature_service", svc):
        yield svc


async def test_defaults_fall_back_to_email_v1_and_no_sms(feature_service: FeatureService) -> None:
    """With no flag set: push falls back to email, the v1 pipeline runs, no SMS is sent."""
    service = UsersNotificationService(db=None)
    assert service.feature_service is feature_service
    result = await service.send_notification("user-1", "IMPORTANT: hi", channel="push")
    assert result == {"pipeline": "v1", "channel": "email"}
    assert service.sent == [("v1", "user-1", "email")]


async def test_push_for_targeted_users_and_the_new_pipeline_globally(feature_service: FeatureService) -> None:
    """Push only for the allowed user; NEW_NOTIFICATION_PIPELINE on globally selects v2."""
    await feature_service.set_flag(Flag.PUSH_NOTIFICATIONS, enabled=True, percentage=0, allow_users=["beta-user"])
    await feature_service.set_flag(Flag.NEW_NOTIFICATION_PIPELINE, enabled=True)
    service = UsersNotificationService(db=None)
    assert await service.send_notification("beta-user", "hello", channel="push") == {"pipeline": "v2", "channel": "push"}
    assert await service.send_notification("other-user", "hello", channel="push") == {"pipeline": "v2", "channel": "email"}


async def test_sms_reaches_about_ten_percent_of_users_stickily(feature_service: FeatureService) -> None:
    """SMS_NOTIFICATIONS on: ~10% of 2,000 users get the SMS, the same ones every time."""
    await feature_service.set_flag(Flag.SMS_NOTIFICATIONS, enabled=True)
    service = UsersNotificationService(db=None)
    users = [f"user-{i}" for i in range(2000)]
    for uid in users:
        await service.send_notification(uid, "IMPORTANT: maintenance tonight")
    first = {uid for kind, uid, _ in service.sent if kind == "sms"}
    assert 140 <= len(first) <= 260  # 10% of 2,000 +- 3 points
    service.sent.clear()
    for uid in users:
        await service.send_notification(uid, "IMPORTANT: maintenance tonight")
        await service.send_notification(uid, "routine update")  # not IMPORTANT: never an SMS
    assert {uid for kind, uid, _ in service.sent if kind == "sms"} == first


async def test_the_shared_service_as_written() -> None:
    """Without overrides, get_service("feature_service") is the shared service (also "feature_flag_service")."""
    shared = get_service("feature_service")
    assert shared is get_service("feature_flag_service")
    await shared.set_flag(Flag.NEW_NOTIFICATION_PIPELINE, enabled=True)
    try:
        service = UsersNotificationService(db=None)
        assert (await service.send_notification("u", "hi"))["pipeline"] == "v2"
    finally:
        await shared.delete_flag(Flag.NEW_NOTIFICATION_PIPELINE)
    assert (await UsersNotificationService(db=None).send_notification("u", "hi"))["pipeline"] == "v1"
