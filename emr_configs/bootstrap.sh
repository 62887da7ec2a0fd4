#!/bin/bash
# EMR bootstrap action: install ctr-pipeline's wheel and its pinned dependencies on every node.
#   bootstrap.sh s3://BUCKET/.../ctr_pipeline-VERSION-py3-none-any.whl [/usr/bin/python3.11]
#
# pyspark is left out on purpose. EMR 7 ships Spark 3.5 with its own pyspark (/usr/lib/spark/python,
# which spark-submit puts on the driver's and executors' PYTHONPATH). A pip-installed pyspark of the
# same line would satisfy the wheel's pin (>=3.5,<3.6) but could shadow EMR's build for plain
# `python3.11` processes, and it is a ~300 MB download on every node. So this script installs the
# wheel's other requirements, with the wheel's own version bounds (read from its METADATA), then the
# wheel itself with --no-deps. The nodes need to reach PyPI (or a mirror named by PIP_INDEX_URL in
# /etc/pip.conf of a custom AMI).
set -euo pipefail
wheel_uri="$1"
python="${2:-/usr/bin/python3.11}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "bootstrap.sh: $python not found (EMR 7.1 and later ship python3.11); set python: in the definition" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
aws s3 cp --only-show-errors "$wheel_uri" "$work/"
wheel="$work/$(basename "$wheel_uri")"

# pip for this interpreter: Amazon Linux 2023's package (python3.11-pip), else ensurepip
if ! "$python" -m pip --version >/dev/null 2>&1; then
  sudo dnf install -y -q "$(basename "$python")-pip" || sudo "$python" -m ensurepip --upgrade
fi
pip_flags=(--quiet --disable-pip-version-check)
if "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
  pip_flags+=(--break-system-packages)
fi

# every requirement of the wheel except pyspark and extras, one per line (a pip requirements file)
"$python" - "$wheel" >"$work/requirements.txt" <<'PY'
import email.parser, re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = email.parser.Parser().parsestr(z.read(meta).decode("utf-8"))
for req in msg.get_all("Requires-Dist") or []:
    name = re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")
    if not re.search(r"\bextra\s*==", req) and name != "pyspark":
        print(req.strip())
PY
if [ -s "$work/requirements.txt" ]; then
  sudo "$python" -m pip install "${pip_flags[@]}" -r "$work/requirements.txt"
fi
sudo "$python" -m pip install "${pip_flags[@]}" --no-deps "$wheel"
