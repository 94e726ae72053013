"""The application layer: parser events become typed log records (one log per concern)."""
