-- The Iceberg SQL catalog (the table layout engines such as PyIceberg
-- read) and the archiver's offset -> file index beside it. Earlier
-- versions created these tables when the catalog opened, hence IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);
CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255) NOT NULL,
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key)
);
CREATE TABLE IF NOT EXISTS lake_files (
    table_namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    partition BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    file_path TEXT NOT NULL,
    first_row BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    PRIMARY KEY (table_namespace, table_name, partition, first_offset)
);
CREATE TABLE IF NOT EXISTS lake_garbage (
    table_namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    file_path TEXT NOT NULL,
    removed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (table_namespace, table_name, file_path)
);
CREATE TABLE IF NOT EXISTS lake_progress (
    table_namespace TEXT NOT NULL,
    table_name TEXT NOT NULL,
    partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (table_namespace, table_name, partition)
);
