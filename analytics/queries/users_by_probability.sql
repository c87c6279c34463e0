-- name: users_by_probability
-- answers: Users ranked by their current probability (after their latest scored writing).
-- param: min_p FLOAT64 = 0.0  only users at or above this probability
SELECT
  RANK() OVER (ORDER BY p_user DESC) AS rank,
  user_id,
  p_user,
  writings_seen,
  created_utc AS last_writing_utc,
  EXISTS (SELECT 1 FROM alerts AS a WHERE a.user_id = latest.user_id) AS alerted
FROM (
  SELECT user_id, p_user, writings_seen, created_utc
  FROM scores
  WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY user_id ORDER BY writings_seen DESC, created_utc DESC) = 1
) AS latest
WHERE p_user >= @min_p
ORDER BY rank, user_id
