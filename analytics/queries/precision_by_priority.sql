-- name: precision_by_priority
-- answers: Precision of reviewed alerts per priority band, and how many alerts still await review.
-- param: reviewer STRING = *  only this reviewer's labels (* = everyone)
WITH verdicts AS (
  SELECT alert_id, label
  FROM labels
  WHERE @reviewer = '*' OR reviewer = @reviewer
  QUALIFY ROW_NUMBER() OVER (PARTITION BY alert_id ORDER BY labelled_at DESC, reviewer) = 1
)
SELECT
  a.priority,
  COUNT(*) AS alerts,
  COUNTIF(v.label IN ('risk', 'no_risk')) AS reviewed,
  COUNTIF(v.label = 'risk') AS risk,
  COUNTIF(v.label = 'no_risk') AS no_risk,
  COUNTIF(v.label = 'undecided') AS undecided,
  COUNTIF(v.label IS NULL) AS unreviewed,
  ROUND(SAFE_DIVIDE(COUNTIF(v.label = 'risk'), COUNTIF(v.label IN ('risk', 'no_risk'))), 4)
    AS precision
FROM alerts AS a
LEFT JOIN verdicts AS v ON v.alert_id = a.alert_id
GROUP BY a.priority
ORDER BY a.priority
