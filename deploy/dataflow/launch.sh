#!/usr/bin/env bash
# Launch (or, with UPDATE=1, update in place) the streaming job from the template.
#   PROJECT=p REGION=r BUCKET=b TEMPLATE=gs://b/templates/earlyrisk-TAG.json IMAGE=... \
#   INPUT=pubsub://projects/p/subscriptions/s OUTPUT=bigquery://p/earlyrisk \
#   KEY_SECRET=projects/p/secrets/earlyrisk-key/versions/latest deploy/dataflow/launch.sh
set -euo pipefail
: "${PROJECT:?}" "${REGION:?}" "${BUCKET:?}" "${TEMPLATE:?}" "${IMAGE:?}"
: "${INPUT:?}" "${OUTPUT:?}" "${KEY_SECRET:?}"
JOB_NAME="${JOB_NAME:-earlyrisk}"
extra=()
if [[ "${UPDATE:-0}" == "1" ]]; then
  # In-place update keeps per-user state: step labels must match the running job
  # (deploy/step-labels.txt); map any renamed step with TRANSFORM_MAPPING='{"Old":"New"}'.
  extra+=(--update)
  [[ -n "${TRANSFORM_MAPPING:-}" ]] && extra+=(--transform-name-mappings "$TRANSFORM_MAPPING")
fi
gcloud dataflow flex-template run "$JOB_NAME" \
  --project "$PROJECT" --region "$REGION" \
  --template-file-gcs-location "$TEMPLATE" \
  --temp-location "gs://${BUCKET}/tmp" --staging-location "gs://${BUCKET}/staging" \
  --enable-streaming-engine \
  --max-workers "${MAX_WORKERS:-4}" \
  --parameters "input=${INPUT},output=${OUTPUT},pseudonym_key_secret=${KEY_SECRET},sdk_container_image=${IMAGE}" \
  "${extra[@]}"
