-- Bearer tokens for the HTTP interfaces: only the SHA-256 of each token
-- (hex) is kept, with the principal it stands for.
CREATE TABLE http_tokens (
    token_sha256 TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);
