#!/usr/bin/env bash
# Build the dicomflow image with buildah (no Docker engine needed), then smoke-test it.
#
#   bash container/build.sh                 build localhost/dicomflow:<version> and smoke-test it
#   bash container/build.sh --archive F.tar also write it as an OCI archive (to copy to a registry)
#
# Options:
#   --base IMAGE     base image (a Debian 12 image pinned by digest); default: a Debian 12 root
#                    file system made here with debootstrap from the Debian mirror
#   --refresh-base   make the debootstrap base again (picks up Debian's point and security updates)
#   --tag NAME       image name (default localhost/dicomflow:<project version>)
#   --archive FILE   also export the image to FILE (oci-archive)
#   --storage DIR    buildah's image store (default .cache/container; vfs driver)
#   --ca-bundle FILE CA certificates pip trusts during the build (default: $PIP_CERT, else this
#                    machine's /etc/ssl/certs/ca-certificates.crt); mounted, never in the image
#   --no-smoke       skip the smoke test
#   --smoke-only     only smoke-test the image already built under --tag
#
# Needs root (buildah with chroot isolation and debootstrap mount and chroot), buildah and
# debootstrap (Debian: apt-get install buildah debootstrap), and the network to reach the Debian
# mirror and PyPI. No registry is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

base=""
refresh_base=0
tag=""
archive=""
storage="$repo/.cache/container"
smoke=1
build=1
ca_bundle=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
while (($#)); do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --refresh-base) refresh_base=1; shift ;;
    --tag) tag=$2; shift 2 ;;
    --archive) archive=$(realpath -m "$2"); shift 2 ;;
    --storage) storage=$(realpath -m "$2"); shift 2 ;;
    --no-smoke) smoke=0; shift ;;
    --smoke-only) build=0; shift ;;
    --ca-bundle) ca_bundle=$(realpath -m "$2"); shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "error: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "run as root (sudo bash container/build.sh): buildah's chroot isolation and debootstrap need it"
command -v buildah >/dev/null || fail "buildah is not installed (Debian: apt-get install buildah)"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ -n $tag ]] || tag="localhost/dicomflow:$version"
mkdir -p "$storage/pip"
# vfs: plain directories, no overlay mounts (works inside containers and VMs without fuse).
bh=(buildah --root "$storage/storage" --runroot "$storage/run" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot
started=$SECONDS

if ((build)); then
# ---- the base: a Debian 12 root file system ---------------------------------------------------
pull=(--pull=missing)
if [[ -z $base ]]; then
  base="localhost/dicomflow-base:bookworm"
  pull=(--pull=never)
  if ((refresh_base)) || ! "${bh[@]}" inspect --type image "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || fail "debootstrap is not installed (Debian: apt-get install debootstrap)"
    work=$(mktemp -d "$storage/base.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "==> making a Debian 12 root file system with debootstrap from $mirror (a minute or two)"
    if ! debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
      tail -20 "$work/debootstrap.log"
      fail "debootstrap failed (log above)"
    fi
    # The suites an official Debian image lists, security updates included.
    rm -f "$work/rootfs/etc/apt/sources.list"
    cat >"$work/rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    chroot "$work/rootfs" apt-get clean
    # Host-specific files and caches do not belong in an image (buildah provides resolv.conf
    # and hosts at run time).
    rm -rf "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/cache/apt/*.bin \
      "$work/rootfs"/var/log/*.log "$work/rootfs"/var/log/apt/* "$work/rootfs"/etc/resolv.conf \
      "$work/rootfs"/etc/hostname "$work/rootfs"/etc/machine-id
    : >"$work/rootfs/etc/machine-id"
    debian_version=$(cat "$work/rootfs/etc/debian_version")
    tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
    ctr=$("${bh[@]}" from scratch)
    "${bh[@]}" add "$ctr" "$work/rootfs.tar" / >/dev/null
    "${bh[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --cmd /bin/bash --label org.dicomflow.base="debootstrap minbase bookworm $debian_version" \
      --label org.dicomflow.base.created="$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ctr"
    "${bh[@]}" commit --rm -q "$ctr" "$base" >/dev/null
    rm -rf "$work"
    trap - EXIT
    echo "==> base $base: Debian $debian_version ($((SECONDS - started)) s)"
  fi
fi

# ---- the image ----------------------------------------------------------------------------------
# The build context is what git tracks (and untracked files it does not ignore): never .venv,
# var/ (with its secrets.json) or .cache.
context=$(mktemp -d "$storage/context.XXXXXX")
trap 'rm -rf "$context"' EXIT
git ls-files -z --cached --others --exclude-standard \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$context" -xf -
echo "==> building $tag from $base (the first time pip downloads ~300 MB of wheels)"
step=$SECONDS
# The pip cache and the CA bundle are volumes of the build, not layers: they stay out of the image.
volumes=(--volume "$storage/pip:/root/.cache/pip:rw")
if [[ -f $ca_bundle ]]; then
  volumes+=(--volume "$ca_bundle:/run/build-ca.crt:ro" --build-arg BUILD_CA_BUNDLE=/run/build-ca.crt)
fi
# No --layers: with the vfs driver every cached layer is a full copy of the file system (a
# build kept ~40 GB of them); pip's cache volume keeps a rebuild's downloads away instead.
previous=$("${bh[@]}" images --no-trunc --format '{{.ID}}' "$tag" 2>/dev/null | head -1 || true)
"${bh[@]}" bud --isolation chroot "${pull[@]}" "${volumes[@]}" \
  --build-arg BASE="$base" --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  -f "$context/container/Containerfile" -t "$tag" "$context"
rm -rf "$context"
trap - EXIT
build_seconds=$((SECONDS - step))
size=$("${bh[@]}" images --format '{{.Size}}' "$tag" | head -1)
image_id=$("${bh[@]}" images --no-trunc --format '{{.ID}}' "$tag" | head -1)
echo "==> built $tag ($image_id, $size) in ${build_seconds} s"
if [[ -n $previous && $previous != "$image_id" ]]; then
  # The image this one replaces, now untagged: a full copy on disk with vfs.
  "${bh[@]}" rmi "$previous" >/dev/null 2>&1 || true
fi

fi

# ---- smoke test ---------------------------------------------------------------------------------
if ((smoke)); then
  echo "==> smoke test"
  ctr=$("${bh[@]}" from --pull=never "$tag")
  trap '"${bh[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
  run() { "${bh[@]}" run --isolation chroot "$ctr" -- "$@"; }
  run dicomflow --help >/dev/null
  run python -c 'import dicomflow, receiver, operators, airflow; print("imports: ok, airflow", airflow.__version__)'
  # dciodvfy on a CT from pydicom's own test files: it must name the IOD.
  # (Not `tee /dev/stderr`: it truncates a log file the output is redirected to.)
  verdict=$(run sh -c 'dciodvfy "$(python -c "from pydicom.data import get_testdata_file; print(get_testdata_file(\"CT_small.dcm\"))")" 2>&1 | head -1')
  echo "dciodvfy: $verdict"
  [[ $verdict == *CTImage* ]] || fail "dciodvfy did not validate a CT image in the image"
  # The readiness probe's tool doing a real C-ECHO, to a Verification SCP in the same container.
  # (Started from Python: buildah 1.28's chroot runtime took `echoscu --version` for an option
  # of its own and ran echoscu without arguments.)
  run python -c '
import subprocess, sys
from pynetdicom import AE
from pynetdicom.sop_class import Verification
ae = AE(ae_title="ADMIN")
ae.add_supported_context(Verification)
server = ae.start_server(("127.0.0.1", 0), block=False)
port = server.server_address[1]
probe = ["echoscu", "-q", "-aet", "K8S-PROBE", "-aec", "ADMIN", "127.0.0.1", str(port)]
code = subprocess.run(probe).returncode
server.shutdown()
print("echoscu C-ECHO:", "ok" if code == 0 else f"exit {code}")
sys.exit(code)' || fail "echoscu could not do a C-ECHO in the image"
  run sh -c 'ls /var/lib/dicomflow/cache/dciodvfy-forkserver-*.so >/dev/null' \
    || fail "the dciodvfy fork-server library is missing from the image"
  "${bh[@]}" rm "$ctr" >/dev/null
  trap - EXIT
  echo "==> smoke test passed"
fi

if [[ -n $archive ]]; then
  "${bh[@]}" push -q "$tag" "oci-archive:$archive:$tag"
  echo "==> wrote $archive ($(du -h "$archive" | cut -f1))"
fi
echo "==> done in $((SECONDS - started)) s: $tag"
