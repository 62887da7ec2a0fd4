#!/bin/bash
# EMR bootstrap action: install ctr-pipeline's wheel and its pinned dependencies on every node.
#   bootstrap.sh s3://BUCKET/.../ctr_pipeline-VERSION-py3-none-any.whl [/usr/bin/python3.11]
# EMR 7 already ships Spark 3.5 and its pyspark: the wheel's pyspark pin (>=3.5,<3.6) is satisfied
# by a pip-installed pyspark of the same line, which must not shadow EMR's own. So the wheel's other
# dependencies are installed, and pyspark is left to EMR (its python files are on PYTHONPATH there).
set -euo pipefail
wheel_uri="$1"
python="${2:-/usr/bin/python3.11}"
work=$(mktemp -d)
aws s3 cp "$wheel_uri" "$work/"
wheel="$work/$(basename "$wheel_uri")"
"$python" -m pip --version >/dev/null 2>&1 || sudo "$python" -m ensurepip --upgrade
# every requirement of the wheel except pyspark, with the wheel's own version bounds
reqs=$("$python" - "$wheel" <<'PY'
import sys, zipfile, email.parser
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = email.parser.Parser().parsestr(z.read(meta).decode())
for req in msg.get_all("Requires-Dist") or []:
    if "extra ==" not in req and not req.lower().startswith("pyspark"):
        print(req.replace(" ", ""))
PY
)
sudo "$python" -m pip install --quiet $reqs
sudo "$python" -m pip install --quiet --no-deps "$wheel"
rm -rf "$work"
