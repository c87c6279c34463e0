-- name: user_timeline
-- answers: One user's probability over time: every scored writing, its own probability, the accumulated user probability, and the alert it triggered if any.
-- param: user_id STRING  the (pseudonymised) user id
SELECT
  s.writings_seen,
  s.created_utc,
  s.submission_id,
  s.kind,
  s.subreddit,
  s.p_text,
  s.p_user,
  a.priority AS alert_priority
FROM scores AS s
LEFT JOIN alerts AS a
  ON a.user_id = s.user_id AND a.submission_id = s.submission_id
WHERE s.user_id = @user_id
ORDER BY s.writings_seen, s.created_utc
