"""Reusable constructs that build what the nested stacks assemble."""
