-- name: alerts_per_day
-- answers: How many alerts were raised each day (event time), for how many users, and how urgent?
-- param: start_date DATE = 1970-01-01  first day included
-- param: end_date DATE = 2099-12-31  last day included
SELECT
  DATE(created_utc) AS day,
  COUNT(*) AS alerts,
  COUNT(DISTINCT user_id) AS users,
  COUNTIF(priority = 'P0') AS p0,
  COUNTIF(priority = 'P1') AS p1,
  COUNTIF(priority = 'P2') AS p2,
  COUNTIF(priority = 'P3') AS p3,
  COUNTIF(priority = 'P4') AS p4
FROM alerts
WHERE DATE(created_utc) BETWEEN @start_date AND @end_date
GROUP BY day
ORDER BY day
