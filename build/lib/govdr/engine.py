"""What depends on the RDS for PostgreSQL major version: parameter values that changed form.

One table for the stack that writes the parameter group, the compliance check that reads it,
and preflight, which asks RDS whether the family accepts each value.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# PostgreSQL 18 turned log_connections from a boolean into a list of connection stages
# (receipt, authentication, authorization, setup_durations, all):
# https://www.postgresql.org/docs/18/runtime-config-logging.html#GUC-LOG-CONNECTIONS
# The three stages are what the boolean logged before 18 (FedRAMP AU-2/AU-12: who connected,
# how they authenticated, as whom); setup_durations adds timings, not identities.
_LOG_CONNECTIONS_LIST: Final = "receipt,authentication,authorization"
_LOG_CONNECTIONS_BOOLEAN: Final = "1"

CONNECTION_LOGGING: Final = MappingProxyType(
    {
        major: MappingProxyType(
            {
                "log_connections": (
                    _LOG_CONNECTIONS_LIST if major >= 18 else _LOG_CONNECTIONS_BOOLEAN
                ),
                # still a boolean in 18
                "log_disconnections": "1",
            }
        )
        for major in range(13, 19)
    }
)
SUPPORTED_MAJORS: Final = tuple(sorted(CONNECTION_LOGGING))


def family(major: int) -> str:
    """The RDS parameter-group family of a PostgreSQL major version."""
    return f"postgres{major}"


def major_of_family(family_name: str) -> int | None:
    """The major version of an RDS PostgreSQL parameter-group family, None if it is not one."""
    digits = family_name.removeprefix("postgres")
    if family_name.startswith("postgres") and digits.isdigit():
        return int(digits)
    return None


def connection_logging(major: int) -> dict[str, str]:
    """The connection-logging parameters with values of the form this major accepts."""
    if major not in CONNECTION_LOGGING:
        supported = ", ".join(str(m) for m in SUPPORTED_MAJORS)
        raise ValueError(f"PostgreSQL major {major} is not one of {supported}")
    return dict(CONNECTION_LOGGING[major])
