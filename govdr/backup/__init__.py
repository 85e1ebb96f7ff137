"""The backup vault's teardown: its contract (contract.py) and its Lambda code (runtime/); the
nested stacks in govdr/stacks/ build its infrastructure.
"""
