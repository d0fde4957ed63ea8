-- Purposes granted to principals by the admin API, in addition to the
-- policy file's [grants].
CREATE TABLE purpose_grants (
    principal TEXT NOT NULL,
    purpose   TEXT NOT NULL,
    PRIMARY KEY (principal, purpose)
);
