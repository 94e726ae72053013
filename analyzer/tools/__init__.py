"""Tools on top of the analysis: the Wireshark cross-check."""
