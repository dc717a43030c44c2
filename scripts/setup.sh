#!/usr/bin/env bash
# Sets up vrun on a Debian 12 machine, as root: Debian packages, npm dependencies (which also build the
# native addon), the TypeScript build, the guest kernel + initrd (cached under $VRUN_ROOT, default
# /var/lib/vrun), and the built-in images. Safe to run again: every step skips what is already done.
#   --with-tests   also build the KVM lab's L1 kernel and install what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
for a in "$@"; do
  case "$a" in
    --with-tests) with_tests=1 ;;
    *) echo "setup.sh: unknown option $a (expected --with-tests)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (vrun manages VMs, mounts and the image store)" >&2
  exit 1
fi

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

# Runtime: QEMU (microvm + virtiofsd), crun for the guest, busybox for the guest and the built-in image,
# the kernel source and toolchain for the guest kernel, the CNI plugins and iptables for pod networking
# (src/network). Tests add the real peers they compare against.
pkgs=(qemu-system-x86 qemu-system-common qemu-utils linux-source-6.1 build-essential bc bison flex libelf-dev libssl-dev
  patch cpio xz-utils zstd busybox-static crun iproute2 kmod python3 containernetworking-plugins iptables)
# The KVM lab's L1 kernel comes from linux-source-6.12 (bookworm-security): it can id-map tmpfs, 6.1 cannot.
test_pkgs=(runc skopeo umoci docker-registry containerd podman libcap2-bin linux-source-6.12)
[ "$with_tests" = 1 ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "npm ci (builds native/ with node-gyp)"
npm ci --no-audit --no-fund

step "build (tsc + the agent, CLI and sandbox bundles)"
npm run --silent build

step "guest image (kernel from linux-source-6.1 + initrd; with --with-tests the KVM lab's L1 from linux-source-6.12)"
if [ "$with_tests" = 1 ]; then node dist/src/guest-image/cli.js --all; else node dist/src/guest-image/cli.js; fi

if [ -f dist/src/cli/commands/image-ensure-builtin.js ] || node bin/vrun.js help 2>/dev/null | grep -q 'image ensure-builtin'; then
  step "built-in images"
  node bin/vrun.js image ensure-builtin
fi
step "setup done"
