"""Validation (guide §5): basic validators returning booleans, pydantic model validation,
database uniqueness checks, composite rule sets and ``ValidationService``.

``get_service("validation_service", db=db)`` or :func:`get_validation_service` returns a
:class:`ValidationService`. Failures of model validation raise
:class:`~crown_nexus.core.exceptions.ValidationException` (422, ``errors`` list).
"""

from __future__ import annotations

from crown_nexus.core.exceptions import ValidationException
from crown_nexus.core.validation._composite import RULES, register_rule, validate_composite
from crown_nexus.core.validation._database import validate_unique
from crown_nexus.core.validation._models import validate_data, validate_model
from crown_nexus.core.validation._service import ValidationService, get_validation_service
from crown_nexus.core.validation._validators import (
    DEFAULT_PASSWORD_SPECIALS,
    validate_credit_card,
    validate_date,
    validate_email,
    validate_enum,
    validate_ip_address,
    validate_length,
    validate_password_strength,
    validate_phone,
    validate_range,
    validate_regex,
    validate_required,
    validate_url,
    validate_uuid,
)

__all__ = [
    "DEFAULT_PASSWORD_SPECIALS",
    "RULES",
    "ValidationException",
    "ValidationService",
    "get_validation_service",
    "register_rule",
    "validate_composite",
    "validate_credit_card",
    "validate_data",
    "validate_date",
    "validate_email",
    "validate_enum",
    "validate_ip_address",
    "validate_length",
    "validate_model",
    "validate_password_strength",
    "validate_phone",
    "validate_range",
    "validate_regex",
    "validate_required",
    "validate_unique",
    "validate_url",
    "validate_uuid",
]


def _register() -> None:
    from crown_nexus.core.dependency_manager import get_registry, register_service

    if "validation_service" not in get_registry().names():
        register_service(get_validation_service, name="validation_service")


_register()
