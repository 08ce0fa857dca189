"""The document service of seed 001 (slide 32): a materialized view by stream-table join."""
