#!/usr/bin/env bash
# Install what building and testing mgmt needs on Debian: protoc (etcd client build), etcd
# (cluster tests), git (deploy tests), systemd + dbus + util-linux (svc tests boot systemd in
# a sandbox; the host's own init is never touched), dpkg-dev + binutils (scripts/build-deb and
# its test: dpkg-shlibdeps, strip, readelf), openssh-server + openssh-client + openssl (the
# --ssh-url tests run their own sshd on a loopback port; keys by ssh-keygen, certificates by
# openssl; the tests use neither the host's sshd service nor /etc/ssh), passwd (the shadow
# tools the user and group kinds apply with, inside the sandbox), apt (the pkg kind and its
# local test repository). Does nothing when everything is there.
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v git >/dev/null 2>&1 || need+=(git)
[ -x /lib/systemd/systemd ] || need+=(systemd)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v cc >/dev/null 2>&1 || need+=(build-essential)   # git2 builds its bundled libgit2
command -v ps >/dev/null 2>&1 || need+=(procps)
command -v dpkg-shlibdeps >/dev/null 2>&1 || need+=(dpkg-dev)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/sbin/useradd ] || need+=(passwd)
command -v apt-cache >/dev/null 2>&1 || need+=(apt)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# cargo fmt and clippy are toolchain components a minimal install may lack.
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
