#!/usr/bin/env bash
# Install what dicomflow needs on Debian 12: system packages and a virtual environment.
# Idempotent: a second run installs nothing that is already there.
#   scripts/install.sh          the platform
#   scripts/install.sh --test   the platform and what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
apt_packages=(python3-venv postgresql orthanc orthanc-dicomweb dcmtk dicom3tools dcm2niix gcc libc6-dev)
if [[ "${1:-}" == "--test" ]]; then
  extras="[test]"
  # The Data Upload page's tests drive Debian's Chromium with Playwright (no browser download).
  apt_packages+=(chromium)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a system-wide Orthanc on ports 8042/4242 where systemd runs; the platform runs
  # its own, so the service is switched off rather than left to take the port.
  if command -v systemctl >/dev/null && systemctl is-active --quiet orthanc 2>/dev/null; then
    echo "==> stopping and disabling the system Orthanc service (dicomflow runs its own)"
    "${sudo_cmd[@]}" systemctl disable --now orthanc || true
  fi
fi

py=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating the virtual environment .venv ($($py --version))"
  "$py" -m venv .venv
fi
stamp=".venv/.dicomflow-installed$extras"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "==> installing Python packages into .venv (the first time takes a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q --progress-bar off -e ".$extras"
  echo "$want" >"$stamp"
fi
echo "==> installed"
