#!/usr/bin/env bash
# The base images of the container build (Dockerfile), made locally the way a mirror would,
# because no image registry is reachable here (tests/it/image.rs builds and runs the image):
#
#   localhost/registry-auth-base/bookworm:12-KEY   a minimal Debian bookworm (debootstrap
#       --variant=minbase from the Debian mirror): the base of the Dockerfile's `prebuilt` stage,
#       which stands in for the `rust:…-bookworm` builder (BUILDER_IMAGE).
#   localhost/registry-auth-base/cc-nonroot:12-KEY   the equivalent of
#       gcr.io/distroless/cc-debian12:nonroot (RUNTIME_IMAGE): the files of the same Debian
#       packages (libc6, libgcc-s1, libstdc++6, libgomp1, libssl3, the CA bundle of
#       ca-certificates, tzdata, netbase, base-files' os-release), /etc/passwd and /etc/group with
#       root, nobody and nonroot (65532:65532, home /home/nonroot), /tmp 1777, no shell and no
#       package manager; USER 65532:65532, WORKDIR /home/nonroot, PATH and SSL_CERT_FILE as
#       distroless sets them.
#
# Cache ($RA_TOOLS/base-images/KEY, KEY = the start of this script's sha256): the debootstrap result (bookworm-rootfs.tar) and the two
# images as `podman save` archives. A second run only loads the archives into podman's storage
# when an image is missing there (storage may not survive between runs); nothing at all when
# both are present. Needs root (debootstrap, rootful podman), like scripts/install-test-deps.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The cache and the image tags are keyed by this script's content, so a change here rebuilds
# them (tests/it/image.rs computes the same key).
key=$(sha256sum "$0" | cut -c1-12)
cache="$RA_TOOLS/base-images/$key"
bookworm=localhost/registry-auth-base/bookworm:12-$key
runtime=localhost/registry-auth-base/cc-nonroot:12-$key
mkdir -p "$cache"
# Earlier versions' caches and images.
for old in "$RA_TOOLS"/base-images/*; do
  if [ "$old" != "$cache" ]; then rm -rf "$old"; fi
done
podman images --format '{{.Repository}}:{{.Tag}}' | while IFS= read -r image; do
  case "$image" in
    localhost/registry-auth-base/*-"$key") ;;
    localhost/registry-auth-base/*) podman rmi "$image" >/dev/null || true ;;
  esac
done

# Loads a cached archive when podman's storage lacks the image.
ensure_loaded() { # image archive
  if podman image exists "$1"; then return 0; fi
  [ -f "$2" ] || return 1
  ra_log "loading $1 from $2"
  podman load -q -i "$2" >/dev/null
  podman image exists "$1" || ra_die "podman load -i $2 did not create $1"
}

if ensure_loaded "$bookworm" "$cache/bookworm.oci.tar" &&
  ensure_loaded "$runtime" "$cache/cc-nonroot.oci.tar"; then
  exit 0
fi

[ "$(id -u)" = 0 ] || ra_die "need root to debootstrap and import the base images (run as root)"
command -v debootstrap >/dev/null || ra_die "debootstrap is missing: run scripts/install-test-deps.sh"
command -v podman >/dev/null || ra_die "podman is missing: run scripts/install-test-deps.sh"

work=$(mktemp -d "$cache/.work.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

# 1. Minimal bookworm, from the Debian mirror (through apt's proxy setting, if any).
if [ ! -f "$cache/bookworm-rootfs.tar" ]; then
  mirror=http://deb.debian.org/debian
  eval "$(apt-config shell http_proxy Acquire::http::Proxy)"
  [ -n "${http_proxy:-}" ] && export http_proxy
  ra_log "debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
  rootfs="$work/rootfs"
  # The extra packages are those distroless cc brings (minbase has libc6 and libgcc-s1).
  debootstrap --variant=minbase \
    --include=ca-certificates,libssl3,libstdc++6,libgomp1,tzdata,netbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; ra_die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/* "$rootfs"/tmp/*
  tar -C "$rootfs" --numeric-owner -cf "$cache/bookworm-rootfs.tar.part" .
  mv "$cache/bookworm-rootfs.tar.part" "$cache/bookworm-rootfs.tar"
  rm -rf "$rootfs"
fi

# 2. The bookworm image.
if ! ensure_loaded "$bookworm" "$cache/bookworm.oci.tar"; then
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$cache/bookworm-rootfs.tar" "$bookworm" >/dev/null
  podman save -q --format oci-archive -o "$cache/bookworm.oci.tar.part" "$bookworm"
  mv "$cache/bookworm.oci.tar.part" "$cache/bookworm.oci.tar"
fi

# 3. The distroless-cc-nonroot equivalent: only the packages' files, copied out of the rootfs.
if ! ensure_loaded "$runtime" "$cache/cc-nonroot.oci.tar"; then
  src="$work/src" out="$work/runtime"
  mkdir -p "$src" "$out"
  tar -C "$src" -xf "$cache/bookworm-rootfs.tar"
  # Merged /usr, as in Debian 12: /lib, /bin, … are symlinks into /usr in both trees, so the
  # packages' paths land where they do in the rootfs.
  for l in bin sbin lib lib32 lib64 libx32; do
    if [ -L "$src/$l" ]; then
      cp -a "$src/$l" "$out/$l"
      mkdir -p "$out/$(readlink "$src/$l")"
    fi
  done
  list="$work/files"
  : >"$list"
  for pkg in libc6 libgcc-s1 libstdc++6 libgomp1 libssl3 tzdata netbase; do
    f=
    for c in "$src/var/lib/dpkg/info/$pkg.list" "$src/var/lib/dpkg/info/$pkg":*.list; do
      if [ -f "$c" ]; then f=$c; fi
    done
    [ -n "$f" ] || ra_die "package $pkg is not in the debootstrap result"
    # Files and symlinks only (directories come with them); not the top-level merged-usr links.
    while IFS= read -r p; do
      if [ -L "$src$p" ] || [ -f "$src$p" ]; then
        case "$p" in /bin | /sbin | /lib | /lib32 | /lib64 | /libx32) continue ;; esac
        printf '%s\n' "${p#/}"
      fi
    done <"$f" >>"$list"
  done
  printf '%s\n' etc/ssl/certs/ca-certificates.crt etc/os-release usr/lib/os-release \
    etc/debian_version >>"$list"
  tar -C "$src" -cf - --no-recursion -T "$list" | tar -C "$out" -xf -
  # Users and groups as distroless writes them; no login shell exists.
  mkdir -p "$out/etc" "$out/tmp" "$out/root" "$out/home/nonroot"
  cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$out/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  printf 'hosts: files dns\nnetworks: files\npasswd: files\ngroup: files\n' >"$out/etc/nsswitch.conf"
  chmod 1777 "$out/tmp"
  chmod 0700 "$out/root" "$out/home/nonroot"
  chown 65532:65532 "$out/home/nonroot"
  for sh in bin/sh bin/bash bin/dash usr/bin/apt usr/bin/dpkg; do
    [ ! -e "$out/$sh" ] || ra_die "the runtime base holds /$sh; it must have no shell or package manager"
  done
  tar -C "$out" --numeric-owner -cf "$work/runtime.tar" .
  podman import -q \
    --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    "$work/runtime.tar" "$runtime" >/dev/null
  podman save -q --format oci-archive -o "$cache/cc-nonroot.oci.tar.part" "$runtime"
  mv "$cache/cc-nonroot.oci.tar.part" "$cache/cc-nonroot.oci.tar"
fi
ra_log "ok: $bookworm, $runtime (cache $cache)"
