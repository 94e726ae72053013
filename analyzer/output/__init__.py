"""Output tables: schemas and writers (Parquet, CSV, JSON lines), files mode 0600."""
