"""The credentials capability: its contract, its Lambda code (runtime/) and its infrastructure."""
