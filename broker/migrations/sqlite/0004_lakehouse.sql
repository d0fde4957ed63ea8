-- Batches whose records are archived in their topic's Iceberg table point
-- at this marker segment instead of a segment object: their bytes are read
-- back from the table's Parquet files, and the segment they were written
-- to can be deleted once nothing else refers to it.
INSERT INTO segments (key, base, size, created_ms) VALUES ('@lake', 0, 0, 0);
