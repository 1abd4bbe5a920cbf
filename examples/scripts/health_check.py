#!/usr/bin/env python3
"""Checks the local disk and load; exits non-zero when the disk is nearly full."""
import os
import shutil

usage = shutil.disk_usage("/")
percent = usage.used * 100 // usage.total
load = os.getloadavg()[0]
print(f"disk used: {percent}%  load(1m): {load:.2f}")
limit = int(os.environ.get("max_disk_percent", "95"))
if percent > limit:
    print(f"disk above {limit}%", flush=True)
    raise SystemExit(1)
