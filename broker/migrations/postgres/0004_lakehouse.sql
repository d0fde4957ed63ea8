-- Batches whose records are archived in their topic's Iceberg table point
-- at this marker segment instead of a segment object.
INSERT INTO segments (key, base, size, created_ms) VALUES ('@lake', 0, 0, 0);
