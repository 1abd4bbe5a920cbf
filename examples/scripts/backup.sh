#!/bin/bash
# The spec's nightly backup, made safe to run anywhere: archives SOURCE (default: the
# scripts folder) into /tmp and reports where it would upload (`target`).
set -euo pipefail
TARGET="${target:-s3://my-backups/$(hostname)}"
SOURCE="${source:-.}"
TIMESTAMP=$(date +%Y%m%d_%H%M%S)
ARCHIVE="/tmp/backup_${TIMESTAMP}_$$.tar.gz"
echo "Archiving ${SOURCE} to ${TARGET}/${TIMESTAMP}.tar.gz ..."
tar czf "$ARCHIVE" "$SOURCE" 2>/dev/null
SIZE=$(du -sh "$ARCHIVE" | cut -f1)
rm -f "$ARCHIVE"
echo "Done. Size: ${SIZE}"
