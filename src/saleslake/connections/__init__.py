"""One module per external system the pipeline talks to, holding how to connect to it:
PostgreSQL (:mod:`.postgres`: the operational source, the warehouse, doctor), DuckDB
(:mod:`.duckdb`: the session every stage uses)."""
