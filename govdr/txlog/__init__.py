"""The txlog capability: its contract, its Lambda code (runtime/) and its infrastructure."""
