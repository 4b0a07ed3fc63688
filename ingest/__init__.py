"""envgrid ingest package."""
