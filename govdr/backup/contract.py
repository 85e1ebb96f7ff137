"""What the backup-vault cleaner shares with its infrastructure: its service name and the
environment variable naming the one vault it may empty. Imports nothing."""

from __future__ import annotations

SERVICE = "backup-vault-cleaner"
ENV_VAULT_NAME = "BACKUP_VAULT_NAME"
