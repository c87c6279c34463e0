-- name: precision_by_threshold
-- answers: Of the reviewed alerts whose probability exceeded each cut-off, how many were real risk? (latest label per alert; undecided excluded)
-- param: reviewer STRING = *  only this reviewer's labels (* = everyone)
WITH verdicts AS (
  SELECT alert_id, label
  FROM labels
  WHERE @reviewer = '*' OR reviewer = @reviewer
  QUALIFY ROW_NUMBER() OVER (PARTITION BY alert_id ORDER BY labelled_at DESC, reviewer) = 1
),
reviewed AS (
  SELECT a.p_user, v.label = 'risk' AS is_risk
  FROM alerts AS a
  JOIN verdicts AS v ON v.alert_id = a.alert_id
  WHERE v.label IN ('risk', 'no_risk')
)
SELECT
  pct / 100 AS cutoff,
  COUNT(r.p_user) AS reviewed,
  COUNTIF(r.is_risk) AS risk,
  COUNTIF(NOT r.is_risk) AS no_risk,
  ROUND(SAFE_DIVIDE(COUNTIF(r.is_risk), COUNT(r.p_user)), 4) AS precision
-- Integer percentages: a decimal literal is FLOAT64 in BigQuery but DECIMAL in DuckDB.
FROM UNNEST([50, 60, 70, 80, 90]) AS pct
LEFT JOIN reviewed AS r ON r.p_user > pct / 100
GROUP BY pct
ORDER BY pct
