-- name: writings_at_alert
-- answers: How many writings did the system need before alerting? Alerts by writings seen (k), in bands.
-- param: first_only BOOL = true  count only each user's first alert (alert_seq = 1)
SELECT
  band,
  min_k,
  alerts,
  ROUND(100 * alerts / SUM(alerts) OVER (), 2) AS pct,
  ROUND(100 * SUM(alerts) OVER (ORDER BY min_k) / SUM(alerts) OVER (), 2) AS cumulative_pct
FROM (
  SELECT
    CASE
      WHEN writings_seen <= 1 THEN '1'
      WHEN writings_seen <= 5 THEN '2-5'
      WHEN writings_seen <= 10 THEN '6-10'
      WHEN writings_seen <= 20 THEN '11-20'
      WHEN writings_seen <= 50 THEN '21-50'
      WHEN writings_seen <= 100 THEN '51-100'
      ELSE '>100'
    END AS band,
    MIN(writings_seen) AS min_k,
    COUNT(*) AS alerts
  FROM alerts
  WHERE alert_seq = 1 OR NOT @first_only
  GROUP BY band
) AS bands
ORDER BY min_k
