#!/bin/sh
# Pretends to deploy `version`; fails when no version is given, to show a failed job.
if [ -z "${version:-}" ]; then
  echo "deploy.sh: no version given (pass params: {\"version\": \"v1.2.3\"})" >&2
  exit 2
fi
echo "Pulling release ${version} ..."
sleep 1
echo "Restarted with ${version}."
