"""TCP flow tracking and per-direction reassembly into ordered, gap-aware byte streams."""
