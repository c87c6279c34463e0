-- name: dead_letters_by_reason
-- answers: Which messages were not scored, where and why: counts and bytes by stage and reason.
-- param: since TIMESTAMP = 1970-01-01T00:00:00Z  only dead letters received at or after this time
SELECT
  stage,
  reason,
  COUNT(*) AS messages,
  SUM(raw_bytes) AS bytes,
  MIN(received_at) AS first_received,
  MAX(received_at) AS last_received
FROM dead_letters
WHERE received_at >= @since
GROUP BY stage, reason
ORDER BY messages DESC, stage, reason
