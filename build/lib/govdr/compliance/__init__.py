"""Compliance as code: checks over synthesized templates."""
