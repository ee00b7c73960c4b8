#!/usr/bin/env bash
# Hosts for the ssh backend's tests: network namespaces on a bridge, each
# running its own sshd with a generated host key, all reachable from here
# only through their addresses.
#
#   netns-hosts.sh up   DIR TAG NET N   # hosts TAG-h1..hN at NET.11..NET.1N
#   netns-hosts.sh down DIR TAG N
#
# DIR gets: client_key (authorized on every host), wrong_key (authorized
# nowhere), known_hosts (every host's key), empty_known_hosts, and
# hK/{sshd_config,host_key,sshd.pid,sshd.log}. Host 1 also runs a second
# sshd on port 2222 whose sessions have no sbin on PATH: a host without
# iptables. The bridge is TAG-br at NET.1; packets between the hosts'
# veths are let through the host's FORWARD chain (Docker's policy drops
# bridged traffic when br_netfilter is loaded), and that rule goes with
# `down`.
set -euo pipefail
cmd=$1 dir=$2 tag=$3
br="$tag-br"

down() {
  local n=$1
  for k in $(seq "$n"); do
    for pidf in "$dir/h$k/sshd.pid" "$dir/h$k/sshd2.pid"; do
      [ -s "$pidf" ] && kill "$(cat "$pidf")" 2>/dev/null || true
    done
    ip netns del "$tag-h$k" 2>/dev/null || true
  done
  ip link del "$br" 2>/dev/null || true
  while iptables -w 5 -D FORWARD -i "$br" -o "$br" -j ACCEPT 2>/dev/null; do :; done
}

case $cmd in
up)
  net=$4 n=$5
  trap 'down "$n"' ERR
  mkdir -p "$dir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C synod-test -f "$dir/client_key"
  ssh-keygen -q -t ed25519 -N '' -C synod-wrong -f "$dir/wrong_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  : > "$dir/known_hosts"
  : > "$dir/empty_known_hosts"
  ip link add "$br" type bridge
  ip addr add "$net.1/24" dev "$br"
  ip link set "$br" up
  iptables -w 5 -I FORWARD 1 -i "$br" -o "$br" -j ACCEPT
  for k in $(seq "$n"); do
    ns="$tag-h$k" addr="$net.1$k" h="$dir/h$k"
    mkdir -p "$h"
    ip netns add "$ns"
    ip link add "$tag-v$k" type veth peer name eth0 netns "$ns"
    ip link set "$tag-v$k" master "$br" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$h/host_key"
    echo "$addr $(cut -d' ' -f1,2 "$h/host_key.pub")" >> "$dir/known_hosts"
    write_config() { # port pidfile extra
      cat > "$h/sshd_config$1" <<CFG
ListenAddress $addr:$1
HostKey $h/host_key
PidFile $2
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
$3
CFG
    }
    write_config 22 "$h/sshd.pid" ""
    ip netns exec "$ns" /usr/sbin/sshd -f "$h/sshd_config22" -E "$h/sshd.log"
    if [ "$k" = 1 ]; then
      write_config 2222 "$h/sshd2.pid" "SetEnv PATH=/usr/bin:/bin"
      ip netns exec "$ns" /usr/sbin/sshd -f "$h/sshd_config2222" -E "$h/sshd2.log"
      echo "[$addr]:2222 $(cut -d' ' -f1,2 "$h/host_key.pub")" >> "$dir/known_hosts"
    fi
  done
  # Every sshd answers before we return.
  for k in $(seq "$n"); do
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/$net.1$k/22") 2>/dev/null && break
      sleep 0.05
    done
  done
  ;;
down)
  down "$4"
  ;;
*)
  echo "usage: $0 up DIR TAG NET N | down DIR TAG N" >&2
  exit 2
  ;;
esac
