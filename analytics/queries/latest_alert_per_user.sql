-- name: latest_alert_per_user
-- answers: For each alerted user, the most recent alert (escalations replace earlier alerts).
-- param: min_priority STRING = P4  only users whose latest alert is this band or more urgent (P0..P4)
SELECT
  user_id,
  alert_id,
  created_utc,
  priority,
  p_user,
  writings_seen,
  alert_seq,
  policy,
  model_version
FROM alerts
WHERE TRUE
QUALIFY
  ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY alert_seq DESC, created_utc DESC) = 1
  AND priority <= @min_priority
ORDER BY created_utc DESC, user_id
