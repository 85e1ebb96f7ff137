"""AWS clients for the operator CLI: the default AWS configuration, or one endpoint.

``AWS_ENDPOINT_URL`` (boto3's own setting) points every client at one endpoint, such as a local
emulator; such an endpoint accepts any credentials, so placeholder ones are used there and
nothing is read from the environment's credential chain.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from govdr.config import REGION

# A local endpoint accepts any credentials; these name it and are no secret.
LOCAL_ENDPOINT_ACCESS = {
    "aws_access_key_id": "govdr-local-endpoint",
    "aws_secret_access_key": "govdr-local-endpoint",
}


@dataclass
class Aws:
    """boto3 clients for one endpoint or for the default AWS configuration."""

    endpoint: str | None = None
    region: str = REGION
    _session: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_env(cls) -> Aws:
        """The endpoint of ``AWS_ENDPOINT_URL`` (if set) in ``AWS_REGION`` (else eu-central-2)."""
        return cls(os.environ.get("AWS_ENDPOINT_URL") or None, os.environ.get("AWS_REGION", REGION))

    @property
    def local(self) -> bool:
        """Whether the clients go to one endpoint rather than to AWS."""
        return self.endpoint is not None

    def session_arguments(self) -> dict[str, str]:
        return dict(LOCAL_ENDPOINT_ACCESS) if self.endpoint else {}

    def client(self, service: str) -> Any:
        import boto3

        if self._session is None:
            self._session = boto3.session.Session(
                region_name=self.region, **self.session_arguments()
            )
        return self._session.client(service, endpoint_url=self.endpoint)


__all__ = ["LOCAL_ENDPOINT_ACCESS", "Aws"]
