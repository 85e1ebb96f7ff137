"""Root stack and one nested stack per concern; stacks only assemble constructs."""
