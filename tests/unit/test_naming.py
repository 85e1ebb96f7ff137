from __future__ import annotations

import pytest

from govdr.naming import alias, name


def test_name_and_alias_follow_convention() -> None:
    assert name("rds", "dev") == "rds-dev"
    assert name("rds-master-secret", "pr7") == "rds-master-secret-pr7"
    assert alias("efs", "dev") == "alias/efs-dev"


@pytest.mark.parametrize("bad", ["RDS", "rds_", "-rds", "rds--x", "", "rds x"])
def test_resource_type_must_be_lowercase_words(bad: str) -> None:
    with pytest.raises(ValueError, match="lowercase words"):
        name(bad, "dev")
