"""AWS Backup selections for the emulator: storage and the Create/Get/List/Delete API.

moto 5.2.5 implements backup plans and vaults but no selections, so neither CloudFormation
nor ``list_backup_selections`` could show what a plan covers.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def _store(account_id: str, region: str) -> dict[str, dict[str, Any]]:
    """Selections live on the moto backend, so the emulator's reset clears them too."""
    from moto.backup.models import backup_backends

    backend = backup_backends[account_id][region]
    store: dict[str, dict[str, Any]] = backend.__dict__.setdefault("govdr_selections", {})
    return store


def create_selection(account_id: str, region: str, plan_id: str, selection: dict[str, Any]) -> str:
    from moto.backup.models import backup_backends

    plan = backup_backends[account_id][region].get_backup_plan(plan_id, None)
    selection_id = str(uuid.uuid4())
    _store(account_id, region)[selection_id] = {
        "SelectionId": selection_id,
        "BackupPlanId": plan_id,
        "BackupPlanArn": plan.backup_plan_arn,
        "CreationDate": datetime.now(UTC).timestamp(),
        "CreatorRequestId": str(uuid.uuid4()),
        "BackupSelection": {
            "SelectionName": selection.get("SelectionName"),
            "IamRoleArn": selection.get("IamRoleArn"),
            "Resources": list(selection.get("Resources", [])),
            "NotResources": list(selection.get("NotResources", [])),
            "ListOfTags": list(selection.get("ListOfTags", [])),
        },
    }
    return selection_id


def delete_selection(account_id: str, region: str, selection_id: str) -> None:
    _store(account_id, region).pop(selection_id, None)


def selections_of(account_id: str, region: str, plan_id: str) -> list[dict[str, Any]]:
    return [s for s in _store(account_id, region).values() if s["BackupPlanId"] == plan_id]


def install_api() -> None:
    """Answer ListBackupSelections, GetBackupSelection and CreateBackupSelection."""
    from moto.backup.responses import BackupResponse

    def _plan_and_selection(self: Any) -> tuple[str, str | None]:
        parts = self.path.split("/plans/")[-1].strip("/").split("/")
        return parts[0], (parts[2] if len(parts) > 2 else None)

    def list_backup_selections(self: Any) -> str:
        plan_id, _ = _plan_and_selection(self)
        items = [
            {
                "SelectionId": s["SelectionId"],
                "SelectionName": s["BackupSelection"]["SelectionName"],
                "BackupPlanId": s["BackupPlanId"],
                "CreationDate": s["CreationDate"],
                "CreatorRequestId": s["CreatorRequestId"],
                "IamRoleArn": s["BackupSelection"]["IamRoleArn"],
            }
            for s in selections_of(self.current_account, self.region, plan_id)
        ]
        return json.dumps({"BackupSelectionsList": items})

    def get_backup_selection(self: Any) -> str:
        _, selection_id = _plan_and_selection(self)
        selection = _store(self.current_account, self.region)[str(selection_id)]
        return json.dumps(
            {
                k: selection[k]
                for k in (
                    "SelectionId",
                    "BackupPlanId",
                    "BackupSelection",
                    "CreationDate",
                    "CreatorRequestId",
                )
            }
        )

    def create_backup_selection(self: Any) -> str:
        plan_id, _ = _plan_and_selection(self)
        body = json.loads(self.body)
        selection_id = create_selection(
            self.current_account, self.region, plan_id, body["BackupSelection"]
        )
        selection = _store(self.current_account, self.region)[selection_id]
        return json.dumps(
            {k: selection[k] for k in ("SelectionId", "BackupPlanId", "CreationDate")}
        )

    BackupResponse.list_backup_selections = list_backup_selections
    BackupResponse.get_backup_selection = get_backup_selection
    BackupResponse.create_backup_selection = create_backup_selection
