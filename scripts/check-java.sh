#!/bin/sh
# Fails in one line when java is missing or older than 17 (Spark 3.5 on EMR 7 uses Java 17).
java_bin="java"
[ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ] && java_bin="$JAVA_HOME/bin/java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "error: java not found; install Java 17 (e.g. 'apt-get install openjdk-17-jre-headless' or 'brew install openjdk@17') and put it on PATH or set JAVA_HOME" >&2
  exit 2
fi
version=$("$java_bin" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
major=$(echo "$version" | sed 's/^1\.//; s/[^0-9].*//')
if [ -z "$major" ] || [ "$major" -lt 17 ]; then
  echo "error: java ${version:-of unknown version} found at $(command -v "$java_bin"), need 17 or newer; install Java 17 (e.g. 'apt-get install openjdk-17-jre-headless') and put it on PATH or set JAVA_HOME" >&2
  exit 2
fi
