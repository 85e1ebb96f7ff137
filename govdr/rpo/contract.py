"""What the RPO monitor shares with its infrastructure and its operators: the metric it
publishes and the environment it reads. Imports nothing (the stacks import it, not the
handler)."""

from __future__ import annotations

NAMESPACE = "govdr/dr"
SERVICE = "rpo-monitor"
ENVIRONMENT_DIMENSION = "Environment"
RPO_SECONDS = "RpoSeconds"

ENV_DB_INSTANCE_ID = "DB_INSTANCE_ID"
ENV_ENVIRONMENT_SUFFIX = "ENVIRONMENT_SUFFIX"
