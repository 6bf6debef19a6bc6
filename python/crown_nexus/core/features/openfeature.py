"""An OpenFeature provider over crown-nexus flags (needs the ``openfeature`` extra).

Code written against the OpenFeature SDK reads the same flags as ``feature_service``::

    from openfeature import api
    from crown_nexus.core.features.openfeature import CrownNexusProvider

    api.set_provider(CrownNexusProvider())
    client = api.get_client()
    client.get_boolean_value("sms_notifications", False, EvaluationContext(targeting_key=user_id))

The evaluation context maps onto :meth:`FeatureService.evaluate`: ``targeting_key`` is the
target id (a ``USER`` unless the attribute ``"target"`` names another kind, e.g. ``"group"``);
the attribute ``"groups"`` (a list) is the target's groups; ``"percentage"`` the call's rollout
limit. Without a targeting key the flag is evaluated ``GLOBAL``. A flag serves its
``on_value`` / ``off_value`` (``True`` / ``False`` unless set), so the typed resolvers
(string, integer, float, object) work for flags given such values; a value of another type is a
``TYPE_MISMATCH``, an unknown flag ``FLAG_NOT_FOUND``, a bad context ``INVALID_CONTEXT`` (each
returning the caller's default, as OpenFeature requires).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from crown_nexus.core.exceptions import ValidationException
from crown_nexus.core.features.models import FeatureTarget, UnknownFlagException
from crown_nexus.core.features.service import FeatureService, get_feature_service

try:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.exception import ErrorCode
    from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
    from openfeature.provider import AbstractProvider, Metadata
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the OpenFeature provider needs openfeature-sdk: pip install 'crown-nexus[openfeature]'"
    ) from exc

__all__ = ["CrownNexusProvider"]

T = TypeVar("T")

_REASONS = {
    "on": Reason.STATIC,
    "disabled": Reason.DISABLED,
    "denied": Reason.TARGETING_MATCH,
    "allowed": Reason.TARGETING_MATCH,
    "rollout": Reason.SPLIT,
    "expired": Reason.DEFAULT,
}


def _accepts(kind: type | tuple[type, ...], value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int or kind is float:
        if isinstance(value, bool):
            return False
        return isinstance(value, int) if kind is int else isinstance(value, int | float)
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, Mapping | list | tuple) and not isinstance(value, str)


class CrownNexusProvider(AbstractProvider):
    """OpenFeature provider reading ``service`` (default: the shared ``feature_service``)."""

    def __init__(self, service: FeatureService | None = None) -> None:
        super().__init__()
        self._service = service

    @property
    def service(self) -> FeatureService:
        """The feature service this provider reads."""
        return self._service if self._service is not None else get_feature_service()

    def get_metadata(self) -> Metadata:
        return Metadata(name="crown-nexus")

    def _resolve(
        self,
        flag_key: str,
        default_value: T,
        context: EvaluationContext | None,
        kind: type | tuple[type, ...],
    ) -> FlagResolutionDetails[T]:
        target: Any = FeatureTarget.GLOBAL
        target_id: Any = None
        groups: Any = None
        percentage: Any = None
        if context is not None:
            attributes = context.attributes or {}
            if context.targeting_key:
                target_id = context.targeting_key
                target = attributes.get("target", FeatureTarget.USER)
            groups = attributes.get("groups")
            percentage = attributes.get("percentage")
            if groups is not None and (isinstance(groups, str) or not isinstance(groups, Sequence)):
                return self._error(default_value, ErrorCode.INVALID_CONTEXT, "groups is a list")
        try:
            result = self.service.evaluate(
                flag_key, target, target_id, percentage, groups=groups
            )
        except UnknownFlagException:
            return self._error(
                default_value, ErrorCode.FLAG_NOT_FOUND, f"Flag '{flag_key}' not found"
            )
        except (ValidationException, TypeError) as exc:
            return self._error(default_value, ErrorCode.INVALID_CONTEXT, str(exc))
        if not _accepts(kind, result.value):
            return self._error(
                default_value,
                ErrorCode.TYPE_MISMATCH,
                f"Flag '{flag_key}' serves a {type(result.value).__name__}",
            )
        return FlagResolutionDetails(
            value=result.value,
            reason=_REASONS.get(result.reason, Reason.UNKNOWN),
            variant="on" if result.enabled else "off",
            flag_metadata={"crown_nexus_reason": result.reason},
        )

    @staticmethod
    def _error(default_value: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
        return FlagResolutionDetails(
            value=default_value, reason=Reason.ERROR, error_code=code, error_message=message
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, bool)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, str)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        details = self._resolve(flag_key, default_value, evaluation_context, float)
        if details.error_code is None and isinstance(details.value, int):
            details.value = float(details.value)
        return details

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, (dict, list))
