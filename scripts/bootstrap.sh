#!/usr/bin/env bash
# Makes sure what Hangar needs is in place (Debian packages, npm dependencies, the build, the native probe); fast when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-start}"

if [[ $(id -u) -ne 0 ]]; then
  echo "hangar: npm $mode must run as root (it manages containers, bridges and cgroups)" >&2
  exit 1
fi

# Debian packages: one dpkg-query for all of them keeps the no-op path cheap.
pkgs=(lxc lxcfs btrfs-progs dnsmasq-base nftables debootstrap busybox-static uidmap iputils-ping xz-utils zstd iproute2 gcc binutils libc6-dev procps attr e2fsprogs util-linux tar gzip
      qemu-system-x86 qemu-utils genisoimage cpio ovmf dosfstools mtools syslinux syslinux-common systemd-boot-efi openssh-server openssh-client)
missing=()
while read -r name status; do
  [[ $status == installed ]] || missing+=("$name")
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null || true)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "hangar: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm dependencies: reinstall when the lockfile changed since the last install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "hangar: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  touch node_modules/.package-lock.json
fi

# Build: bundle when any source is newer than the last build.
mkdir -p dist/native
if [[ ! -f dist/.stamp ]] || [[ -n $(find src bench scripts/build.mjs package-lock.json -newer dist/.stamp -print -quit 2>/dev/null) ]]; then
  echo "hangar: building" >&2
  node scripts/build.mjs >&2
  touch dist/.stamp
fi
if [[ ! -x dist/native/hangar-cpuid || native/cpuid.c -nt dist/native/hangar-cpuid ]]; then
  gcc -O2 -Wall -o dist/native/hangar-cpuid native/cpuid.c >&2
fi
# The fast-exec addon (posix_spawn instead of forking the daemon for every command) needs Node's own headers; without
# them hangard runs commands through child_process, as correctly and ~2 ms slower each.
if [[ -f /usr/include/node/node_api.h ]]; then
  if [[ ! -f dist/native/fast-exec.node || native/fast-exec.c -nt dist/native/fast-exec.node ]]; then
    gcc -O2 -Wall -Wextra -Wno-unused-parameter -shared -fPIC -I/usr/include/node -o dist/native/fast-exec.node native/fast-exec.c >&2
  fi
else
  echo "hangar: no Node-API headers in /usr/include/node: the fast-exec addon is not built (commands run through child_process)" >&2
fi
