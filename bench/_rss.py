"""Run one command, then write its wall time and peak RSS (this wrapper has exactly one child, so
RUSAGE_CHILDREN's maxrss is that child's) as JSON to argv[1]. Usage: _rss.py OUT -- CMD..."""
import json
import resource
import subprocess
import sys
import time

out, cmd = sys.argv[1], sys.argv[3:]
t0 = time.perf_counter()
proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    json.dump({"wall": wall, "maxrss_kb": ru.ru_maxrss, "user": ru.ru_utime, "sys": ru.ru_stime,
               "rc": proc.returncode, "stdout": proc.stdout.decode("utf-8", "replace"),
               "stderr": proc.stderr.decode("utf-8", "replace")[-4000:]}, f)
sys.exit(0)
