"""Bottom layer: errors, redaction, small text and hardware helpers, worker processes; imports nothing of the factory."""
