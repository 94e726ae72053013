"""State kept across runs (the persistent baseline)."""
