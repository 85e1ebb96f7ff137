"""``govdr preflight``: read-only checks of the target account and region before a deploy."""
