"""The operator CLI ``govdr``: argument parsing only; the logic lives in plain functions."""
