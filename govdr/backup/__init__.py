"""The backup capability: its contract, its Lambda code (runtime/) and its infrastructure."""
