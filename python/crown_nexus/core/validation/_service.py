"""``ValidationService`` (guide §5), registered as ``"validation_service"``."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.validation import _validators as v
from crown_nexus.core.validation._composite import validate_composite
from crown_nexus.core.validation._database import validate_unique
from crown_nexus.core.validation._models import validate_data, validate_model

__all__ = ["ValidationService", "get_validation_service"]

M = TypeVar("M", bound=BaseModel)


class ValidationService:
    """Every validator of guide §5 in one object, with an optional database session for
    :meth:`validate_unique`. Build one per session: ``get_validation_service(db)`` or
    ``get_service("validation_service", db=db)``."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    # basic validators: same signatures and promises as the module functions
    def validate_email(self, value: Any, check_deliverability: bool = False) -> bool:
        """See :func:`crown_nexus.core.validation.validate_email`."""
        return v.validate_email(value, check_deliverability=check_deliverability)

    def validate_phone(self, value: Any, region: str | None = None) -> bool:
        """See :func:`crown_nexus.core.validation.validate_phone`."""
        return v.validate_phone(value, region)

    def validate_url(self, value: Any, **options: Any) -> bool:
        """See :func:`crown_nexus.core.validation.validate_url`."""
        return v.validate_url(value, **options)

    def validate_date(self, value: Any, **options: Any) -> bool:
        """See :func:`crown_nexus.core.validation.validate_date`."""
        return v.validate_date(value, **options)

    def validate_length(self, value: Any, min_length: int | None = None, max_length: int | None = None) -> bool:
        """See :func:`crown_nexus.core.validation.validate_length`."""
        return v.validate_length(value, min_length, max_length)

    def validate_range(self, value: Any, min_value: Any = None, max_value: Any = None) -> bool:
        """See :func:`crown_nexus.core.validation.validate_range`."""
        return v.validate_range(value, min_value, max_value)

    def validate_regex(self, value: Any, pattern: Any, flags: int = 0) -> bool:
        """See :func:`crown_nexus.core.validation.validate_regex`."""
        return v.validate_regex(value, pattern, flags)

    def validate_required(self, value: Any) -> bool:
        """See :func:`crown_nexus.core.validation.validate_required`."""
        return v.validate_required(value)

    def validate_uuid(self, value: Any, version: int | None = None) -> bool:
        """See :func:`crown_nexus.core.validation.validate_uuid`."""
        return v.validate_uuid(value, version)

    def validate_credit_card(self, value: Any) -> bool:
        """See :func:`crown_nexus.core.validation.validate_credit_card`."""
        return v.validate_credit_card(value)

    def validate_ip_address(self, value: Any, version: int | None = None) -> bool:
        """See :func:`crown_nexus.core.validation.validate_ip_address`."""
        return v.validate_ip_address(value, version)

    def validate_password_strength(self, password: Any, **options: Any) -> bool:
        """See :func:`crown_nexus.core.validation.validate_password_strength`."""
        return v.validate_password_strength(password, **options)

    def validate_enum(self, value: Any, enum_class: type[Enum]) -> bool:
        """See :func:`crown_nexus.core.validation.validate_enum`."""
        return v.validate_enum(value, enum_class)

    # models, composites, database
    def validate_data(self, data: Any, model: type[M]) -> M:
        """Validated ``model`` instance or :class:`ValidationException` (see ``validate_data``)."""
        return validate_data(data, model)

    def validate_model(self, instance: M) -> M:
        """See :func:`crown_nexus.core.validation.validate_model`."""
        return validate_model(instance)

    def validate_composite(
        self, data: Mapping[str, Any], rules: Mapping[str, Mapping[str, Any]]
    ) -> tuple[bool, list[dict[str, Any]]]:
        """``(is_valid, errors)``; see :func:`crown_nexus.core.validation.validate_composite`."""
        return validate_composite(data, rules)

    async def validate_unique(
        self,
        field: str,
        value: Any,
        model: Any,
        db: Any = None,
        exclude_id: Any = None,
        id_field: str = "id",
    ) -> bool:
        """True when no ``model`` row has ``field == value``, on ``db`` or the service's session.

        Raises :class:`ConfigurationException` when neither session is given.
        """
        session = db if db is not None else self.db
        if session is None:
            raise ConfigurationException(
                "ValidationService.validate_unique needs a session: get_validation_service(db)"
            )
        return await validate_unique(field, value, model, session, exclude_id, id_field)


def get_validation_service(db: Any = None) -> ValidationService:
    """A :class:`ValidationService` bound to ``db`` (an ``AsyncSession``, or ``None``)."""
    return ValidationService(db)
