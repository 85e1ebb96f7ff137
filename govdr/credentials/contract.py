"""What the rotation function shares with its infrastructure: the environment variable that
chooses its strategy, and the strategies. Imports nothing (the stacks import it, not the
handler)."""

from __future__ import annotations

SERVICE = "rds-rotation"
ENV_ROTATION_STRATEGY = "ROTATION_STRATEGY"
ENV_EXCLUDE_CHARACTERS = "EXCLUDE_CHARACTERS"
SINGLE_USER = "single-user"
ALTERNATING_USERS = "alternating-users"
