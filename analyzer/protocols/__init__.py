"""Application protocols above TCP: content recognition and the TLS hello reader."""
