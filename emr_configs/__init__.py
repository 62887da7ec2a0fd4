"""EMR cluster definitions and launcher (not built yet: see emr_configs/README.md)."""
