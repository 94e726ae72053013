"""Running an analysis: the pipeline that wires the layers, and progress."""
