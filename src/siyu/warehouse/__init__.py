"""The warehouse: Parquet snapshots of what segment rules read; memberships computed on DuckDB or Spark."""
