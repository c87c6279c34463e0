-- earlyrisk embedded store (DuckDB). Generated from models/records.py;
-- timestamps are UTC. Column meanings: README.md, 'Tables'.
CREATE TABLE IF NOT EXISTS scores (
    user_id VARCHAR NOT NULL,
    submission_id VARCHAR NOT NULL,
    created_utc TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,
    subreddit VARCHAR NOT NULL,
    p_text DOUBLE NOT NULL,
    p_user DOUBLE NOT NULL,
    writings_seen BIGINT NOT NULL,
    model_version VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    processed_at TIMESTAMP,
    PRIMARY KEY (submission_id, user_id, model_version)
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    submission_id VARCHAR NOT NULL,
    created_utc TIMESTAMP NOT NULL,
    p_user DOUBLE NOT NULL,
    writings_seen BIGINT NOT NULL,
    threshold DOUBLE NOT NULL,
    priority VARCHAR NOT NULL,
    policy VARCHAR NOT NULL,
    top_terms VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    alert_seq BIGINT NOT NULL,
    explanation VARCHAR,
    PRIMARY KEY (alert_id)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    dead_letter_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    raw VARCHAR NOT NULL,
    raw_bytes BIGINT NOT NULL,
    received_at TIMESTAMP NOT NULL,
    PRIMARY KEY (dead_letter_id)
);

CREATE TABLE IF NOT EXISTS writings (
    user_id VARCHAR NOT NULL,
    submission_id VARCHAR NOT NULL,
    created_utc TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,
    subreddit VARCHAR NOT NULL,
    title VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    PRIMARY KEY (submission_id, user_id)
);

CREATE TABLE IF NOT EXISTS labels (
    alert_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    comment VARCHAR NOT NULL,
    reviewer VARCHAR NOT NULL,
    labelled_at TIMESTAMP NOT NULL,
    PRIMARY KEY (alert_id, reviewer, labelled_at)
);
