"""Secrets Manager rotation of the database logins (single user and alternating users)."""
