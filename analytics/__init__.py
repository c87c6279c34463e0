"""Analytics pack: named BigQuery-SQL queries over the alert tables, also run on DuckDB."""
