#!/usr/bin/env bash
# Build and push the image, then write the Flex Template spec to GCS.
#   PROJECT=my-proj REGION=europe-west1 BUCKET=my-bucket deploy/dataflow/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
REPO="${REPO:-earlyrisk}"
TAG="${TAG:-$(git rev-parse --short HEAD)}"
IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPO}/earlyrisk:${TAG}"
gcloud builds submit --project "$PROJECT" --tag "$IMAGE" \
  --config <(printf 'steps:\n- name: gcr.io/cloud-builders/docker\n  args: [build, -f, deploy/dataflow/Dockerfile, -t, %s, .]\nimages: [%s]\n' "$IMAGE" "$IMAGE") .
gcloud dataflow flex-template build "gs://${BUCKET}/templates/earlyrisk-${TAG}.json" \
  --project "$PROJECT" --image "$IMAGE" --sdk-language PYTHON \
  --metadata-file deploy/dataflow/metadata.json
echo "template: gs://${BUCKET}/templates/earlyrisk-${TAG}.json"
echo "image:    ${IMAGE}"
