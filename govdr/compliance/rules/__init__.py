"""govdr's own gate rules, one module per rule (registered in govdr.compliance.template_checks
and govdr.compliance.gate)."""
