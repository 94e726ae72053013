"""The rules, one module per section of the detection reference (docs/detections.md)."""
