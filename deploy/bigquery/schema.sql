-- earlyrisk tables in BigQuery. Generated from models/records.py by
-- storage/bigquery_store.py (tests/test_bigquery_store.py keeps it in sync).
-- Replace `earlyrisk` with your dataset, or let the pipeline create the
-- tables: earlyrisk run --output bigquery://PROJECT/DATASET --bq-create-tables
CREATE TABLE IF NOT EXISTS `earlyrisk.scores` (
    user_id STRING NOT NULL OPTIONS(description="pseudonymised user id (raw author only on opt-out)"),
    submission_id STRING NOT NULL OPTIONS(description="Reddit id of the post or comment"),
    created_utc TIMESTAMP NOT NULL OPTIONS(description="event time: when the writing was posted"),
    kind STRING NOT NULL OPTIONS(description="post or comment"),
    subreddit STRING NOT NULL OPTIONS(description="community the writing was posted in"),
    p_text FLOAT64 NOT NULL OPTIONS(description="probability from this writing alone"),
    p_user FLOAT64 NOT NULL OPTIONS(description="probability from all the user's writings so far"),
    writings_seen INT64 NOT NULL OPTIONS(description="k: writings of this user scored so far, this one included"),
    model_version STRING NOT NULL OPTIONS(description="model name and content hash"),
    source STRING NOT NULL OPTIONS(description="where the message came from (file/kafka/pubsub position)"),
    processed_at TIMESTAMP OPTIONS(description="processing time: when the pipeline scored it"),
    PRIMARY KEY (user_id, submission_id, model_version) NOT ENFORCED
)
PARTITION BY DATE(created_utc)
CLUSTER BY user_id
OPTIONS(description="One row per scored submission.");

CREATE TABLE IF NOT EXISTS `earlyrisk.alerts` (
    alert_id STRING NOT NULL OPTIONS(description="deterministic id: hash of user, model, policy, sequence"),
    user_id STRING NOT NULL OPTIONS(description="pseudonymised user id"),
    submission_id STRING NOT NULL OPTIONS(description="the writing after which the alert was raised"),
    created_utc TIMESTAMP NOT NULL OPTIONS(description="event time of that writing"),
    p_user FLOAT64 NOT NULL OPTIONS(description="user probability at alert time"),
    writings_seen INT64 NOT NULL OPTIONS(description="k at alert time (the delay of the decision)"),
    threshold FLOAT64 NOT NULL OPTIONS(description="the policy's threshold"),
    priority STRING NOT NULL OPTIONS(description="P0 (>0.9), P1 (>0.8), P2 (>0.7), P3 (>0.6) or P4"),
    policy STRING NOT NULL OPTIONS(description="decision policy, e.g. incremental(0.5)"),
    top_terms STRING NOT NULL OPTIONS(description="terms that pushed the user's score up most, as JSON [[term, logit contribution]]"),
    model_version STRING NOT NULL OPTIONS(description="model name and content hash"),
    alert_seq INT64 NOT NULL OPTIONS(description="1 for a user's first alert, 2 for an escalation, ..."),
    explanation STRING OPTIONS(description="why, as JSON: logit contributions of the triggering writing's terms (docs/MODEL.md, 'Explanations'); NULL in rows written before it existed"),
    PRIMARY KEY (alert_id) NOT ENFORCED
)
PARTITION BY DATE(created_utc)
CLUSTER BY user_id
OPTIONS(description="One row per alert raised for expert review.");

CREATE TABLE IF NOT EXISTS `earlyrisk.dead_letters` (
    dead_letter_id STRING NOT NULL OPTIONS(description="deterministic id: hash of source position and stage"),
    stage STRING NOT NULL OPTIONS(description="stage that rejected it: read, parse, dedupe, sink"),
    reason STRING NOT NULL OPTIONS(description="machine-readable reason, e.g. invalid_json, duplicate"),
    detail STRING NOT NULL OPTIONS(description="human-readable detail"),
    source STRING NOT NULL OPTIONS(description="where the message came from"),
    raw STRING NOT NULL OPTIONS(description="the payload (invalid bytes escaped; cut at the size limit)"),
    raw_bytes INT64 NOT NULL OPTIONS(description="size of the original payload in bytes"),
    received_at TIMESTAMP NOT NULL OPTIONS(description="processing time of the rejection"),
    PRIMARY KEY (dead_letter_id) NOT ENFORCED
)
PARTITION BY DATE(received_at)
CLUSTER BY stage, reason
OPTIONS(description="One row per message that was not scored.");

CREATE TABLE IF NOT EXISTS `earlyrisk.writings` (
    user_id STRING NOT NULL OPTIONS(description="pseudonymised user id"),
    submission_id STRING NOT NULL OPTIONS(description="Reddit id of the post or comment"),
    created_utc TIMESTAMP NOT NULL OPTIONS(description="event time"),
    kind STRING NOT NULL OPTIONS(description="post or comment"),
    subreddit STRING NOT NULL OPTIONS(description="community"),
    title STRING NOT NULL OPTIONS(description="title (empty for comments)"),
    body STRING NOT NULL OPTIONS(description="body text"),
    source STRING NOT NULL OPTIONS(description="where the message came from"),
    PRIMARY KEY (user_id, submission_id) NOT ENFORCED
)
PARTITION BY DATE(created_utc)
CLUSTER BY user_id
OPTIONS(description="The text of each scored submission (omitted with --no-store-text).");

CREATE TABLE IF NOT EXISTS `earlyrisk.labels` (
    alert_id STRING NOT NULL OPTIONS(description="the alert reviewed"),
    user_id STRING NOT NULL OPTIONS(description="pseudonymised user id"),
    label STRING NOT NULL OPTIONS(description="risk, no_risk or undecided"),
    comment STRING NOT NULL OPTIONS(description="the reviewer's optional comment"),
    reviewer STRING NOT NULL OPTIONS(description="who reviewed it"),
    labelled_at TIMESTAMP NOT NULL OPTIONS(description="when"),
    PRIMARY KEY (alert_id, reviewer, labelled_at) NOT ENFORCED
)
PARTITION BY DATE(labelled_at)
CLUSTER BY user_id
OPTIONS(description="Expert review verdicts; the latest row per alert is the current one.");
