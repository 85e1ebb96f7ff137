"""The database credentials' rotation: its contract (contract.py) and its Lambda code (runtime/);
the nested stacks in govdr/stacks/ build its infrastructure.
"""
