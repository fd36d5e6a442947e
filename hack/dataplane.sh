#!/usr/bin/env bash
# A real NetworkPolicy dataplane for the test control plane (a TEST FIXTURE, not part of the
# product): SIG Network's kube-network-policies v0.8.0, built from its Go module, runs as the node
# agent of one test node against the control plane of hack/controlplane.sh, and decides every new
# connection between test pods by the NetworkPolicies in the API server (nfqueue verdicts). The
# pods' network namespaces are made by the test node agent in tests/dataplane/node_agent.rs.
#
#   hack/dataplane.sh up       check the machine, build if needed, start the agent; prints key=value
#   hack/dataplane.sh down     stop the agent and remove every netns, veth, rule and table named ztdp*
#                              (idempotent: also cleans up after a crash)
#   hack/dataplane.sh clean-pods  remove the pods' network namespaces and veths only
#   hack/dataplane.sh check    only check that this machine can run it; says exactly what is missing
#   hack/dataplane.sh build    only build (or find cached) kube-network-policies; prints its path
#   hack/dataplane.sh status   exit 0 when the agent runs and listens on its queue
#
# Needs root, a running control plane (hack/controlplane.sh up, same ZT_CONTROLPLANE_DIR), and
# iproute2, iptables, nftables, conntrack (installed with apt-get when missing). One per machine:
# the names below are fixed so that `down` finds whatever a crashed run left.
#
# Environment:
#   ZT_CONTROLPLANE_DIR  the control plane's state; the dataplane's lives in its dataplane/ folder
#   ZT_CACHE_DIR         binary cache, keyed by version; default ~/.cache/zerotrust-operator
#   ZT_DATAPLANE_QUEUE   the nfqueue number the agent listens on; default 100 (upstream's default)
set -euo pipefail

KNP_VERSION=v0.8.0

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mod_dir="$repo/hack/dataplane"
cp_state="${ZT_CONTROLPLANE_DIR:-$repo/.controlplane}"
state="$cp_state/dataplane"
cache="${ZT_CACHE_DIR:-$HOME/.cache/zerotrust-operator}/dataplane/kube-network-policies-$KNP_VERSION"
agent="$cache/bin/kube-network-policies"
queue="${ZT_DATAPLANE_QUEUE:-100}"

# Shared with tests/dataplane/: every name starts with `ztdp` so that `down` can find it.
node=ztdp-node
cidr=198.18.0.0/24 # RFC 2544's benchmarking range: never routed on the internet
gateway=198.18.0.1 # on the host side of every pod's veth
chain=ZTDP         # iptables chains (table mangle): ZTDP-QUEUE, ZTDP-NO-LEAK
probe_table=ztdp-check
agent_table=kube-network-policies # the table kube-network-policies names itself

log() { printf 'dataplane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools ---------------------------------------------------------------------------------------
tools() {
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v iptables-nft >/dev/null || missing+=(iptables)
  command -v nft >/dev/null || missing+=(nftables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v unshare >/dev/null || missing+=(util-linux)
  [ "${#missing[@]}" = 0 ] && return
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]}"
  local out
  out=$({ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } 2>&1) ||
    die "apt-get install ${missing[*]} failed: $out"
}

# --- feasibility ---------------------------------------------------------------------------------
# Which hook sends new connections to the agent's queue: `native` when the kernel has nftables'
# queue expression (the agent installs its own table), `xt` when it has only the xtables NFQUEUE
# target (CONFIG_NFT_QUEUE unset, as on the CI machines: the agent's own table cannot load, so this
# script installs the same hook with iptables, see install_hook). Fails naming what is missing.
check() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, veths, netfilter)"
  tools
  local err
  ip netns del "$probe_table" 2>/dev/null || true
  err=$(ip netns add "$probe_table" 2>&1) || die "cannot create a network namespace (ip netns add): $err"
  err=$(ip link add "$probe_table" type veth peer name eth0 netns "$probe_table" 2>&1) || {
    ip netns del "$probe_table"
    die "cannot create a veth pair (CONFIG_VETH): $err"
  }
  ip link del "$probe_table"
  ip netns del "$probe_table"
  [ -e /proc/net/netfilter/nfnetlink_queue ] ||
    die "the kernel has no nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE): kube-network-policies cannot receive packets"
  err=$(nft -f - 2>&1 <<EOF
table inet $probe_table {
  chain postrouting {
    type filter hook postrouting priority srcnat - 5; policy accept;
    ct state established,related accept
  }
}
EOF
  ) || die "nftables with conntrack (CONFIG_NF_TABLES, CONFIG_NFT_CT) does not work: $err"
  local hook
  if err=$(nft add rule inet "$probe_table" postrouting ip daddr "$gateway" queue num "$queue" 2>&1); then
    hook=native
  else
    log "nftables' queue expression is missing (CONFIG_NFT_QUEUE; nft said: ${err%%$'\n'*})"
    iptables-nft -t mangle -N "$probe_table-x" 2>/dev/null || true
    if err=$(iptables-nft -t mangle -A "$probe_table-x" -j NFQUEUE --queue-num "$queue" 2>&1); then
      hook=xt
      log "using the xtables NFQUEUE target instead (CONFIG_NETFILTER_XT_TARGET_NFQUEUE)"
    fi
    iptables-nft -t mangle -F "$probe_table-x" 2>/dev/null || true
    iptables-nft -t mangle -X "$probe_table-x" 2>/dev/null || true
    tidy_mangle
  fi
  nft delete table inet "$probe_table"
  [ -n "${hook:-}" ] ||
    die "the kernel can queue packets to user space neither with nftables (CONFIG_NFT_QUEUE) nor with xtables (CONFIG_NETFILTER_XT_TARGET_NFQUEUE): $err"
  echo "$hook"
}

# --- build ---------------------------------------------------------------------------------------
build() {
  if [ ! -x "$agent" ]; then
    command -v go >/dev/null || die "Go is needed to build kube-network-policies (https://go.dev/dl)"
    log "building kube-network-policies $KNP_VERSION into $cache/bin (cold: a few minutes)"
    mkdir -p "$cache/bin.tmp"
    (
      cd "$mod_dir"
      CGO_ENABLED=0 GOFLAGS="-buildvcs=false" go build -trimpath -ldflags "-s -w" \
        -o "$cache/bin.tmp/kube-network-policies" sigs.k8s.io/kube-network-policies/cmd
    )
    rm -rf "$cache/bin" && mv "$cache/bin.tmp" "$cache/bin"
  fi
  echo "$agent"
}

# --- helpers -------------------------------------------------------------------------------------
kubectl() { "$cp_state/kubectl" --kubeconfig "$cp_state/kubeconfig" "$@"; }

alive() { [ -f "$state/agent.pid" ] && kill -0 "$(cat "$state/agent.pid")" 2>/dev/null; }

listening() { # the agent has bound its nfqueue (first column of the kernel's table is the queue)
  awk -v q="$queue" '$1 == q { found = 1 } END { exit !found }' /proc/net/netfilter/nfnetlink_queue
}

apiserver() { sed -n 's/^ *server: //p' "$cp_state/kubeconfig"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The same hook as the agent's own table (its syncNFTablesRules with AdminNetworkPolicy on, which
# queues every pod's packets instead of a set of selected ones): root's own connections and packets
# of established connections pass, every other packet from or to a pod goes to the agent's queue,
# without `bypass`, so packets are dropped while the agent is not listening (fail closed, as the
# agent's default). The agent alone decides each one. Only the queueing target differs.
install_hook() {
  iptables-nft -t mangle -N "$chain-QUEUE"
  iptables-nft -t mangle -A "$chain-QUEUE" -m owner --uid-owner 0 -j RETURN
  iptables-nft -t mangle -A "$chain-QUEUE" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables-nft -t mangle -A "$chain-QUEUE" -s "$cidr" -j NFQUEUE --queue-num "$queue"
  iptables-nft -t mangle -A "$chain-QUEUE" -d "$cidr" -j NFQUEUE --queue-num "$queue"
  iptables-nft -t mangle -A POSTROUTING -j "$chain-QUEUE"
}

# Nothing leaves the machine: the pods have no default route, and the host drops any forwarded
# packet between the test range and an address outside it.
install_no_leak() {
  iptables-nft -t mangle -N "$chain-NO-LEAK"
  iptables-nft -t mangle -A "$chain-NO-LEAK" -s "$cidr" ! -d "$cidr" -j DROP
  iptables-nft -t mangle -A "$chain-NO-LEAK" ! -s "$cidr" -d "$cidr" -j DROP
  iptables-nft -t mangle -A FORWARD -j "$chain-NO-LEAK"
}

remove_chain() { # remove_chain PARENT CHAIN
  command -v iptables-nft >/dev/null || return 0
  while iptables-nft -t mangle -D "$1" -j "$2" 2>/dev/null; do :; done
  iptables-nft -t mangle -F "$2" 2>/dev/null || true
  iptables-nft -t mangle -X "$2" 2>/dev/null || true
}

remove_hook() {
  remove_chain POSTROUTING "$chain-QUEUE"
  remove_chain FORWARD "$chain-NO-LEAK"
  tidy_mangle
}

tidy_mangle() { # iptables-nft leaves its table behind; drop it when only empty base chains are left
  if command -v nft >/dev/null && nft list table ip mangle >/dev/null 2>&1 &&
    ! nft list table ip mangle | grep -qvE '^\s*(table|chain|type|\}|$|#)'; then
    nft delete table ip mangle 2>/dev/null || true
  fi
}

# The agent's identity, as its upstream install.yaml grants it: list/watch pods, namespaces and
# NetworkPolicies, through a ServiceAccount token.
credentials() {
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: kube-network-policies, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kube-network-policies}
rules:
- apiGroups: [""]
  resources: [pods, namespaces]
  verbs: [list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kube-network-policies}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-network-policies}
subjects:
- {kind: ServiceAccount, name: kube-network-policies, namespace: kube-system}
EOF
  mkdir -p "$state/serviceaccount"
  kubectl -n kube-system create token kube-network-policies --duration 8760h \
    >"$state/serviceaccount/token"
  cp "$cp_state/pki/ca.crt" "$state/serviceaccount/ca.crt"
}

# kube-network-policies knows only the in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT and
# a token under /var/run/secrets. It gets them in a mount namespace of its own, where a tmpfs over
# /run holds them; the host's /run is untouched. Its NRI client finds no runtime socket there and
# falls back to the API server's pod IPs, which is what the test node agent reports.
start_agent() {
  local url port metrics
  url=$(apiserver)
  port=${url##*:}
  metrics=$(free_port)
  KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$port" \
    unshare --mount --propagation private -- sh -c '
      mount -t tmpfs -o size=1m,mode=0755 ztdp-secrets /run &&
      mkdir -p /run/secrets/kubernetes.io/serviceaccount &&
      cp "$1"/token "$1"/ca.crt /run/secrets/kubernetes.io/serviceaccount/ &&
      shift && exec "$@"' sh "$state/serviceaccount" \
    "$agent" --hostname-override "$node" --nfqueue-id "$queue" \
    --metrics-bind-address "127.0.0.1:$metrics" --netfilter-bug-1766-fix=false --fail-open=false \
    --v 2 >>"$state/kube-network-policies.log" 2>&1 9>&- &
  echo $! >"$state/agent.pid"
  echo "$url" >"$state/apiserver"
  echo "127.0.0.1:$metrics" >"$state/metrics"
  local deadline=$((SECONDS + 60))
  until listening && curl -sf "http://127.0.0.1:$metrics/metrics" -o /dev/null; do
    alive || die "kube-network-policies exited; see $state/kube-network-policies.log"
    [ "$SECONDS" -lt "$deadline" ] || die "kube-network-policies did not listen on queue $queue; see $state/kube-network-policies.log"
    sleep 0.2
  done
  if [ "$(cat "$state/hook")" = native ]; then
    until nft list table inet "$agent_table" >/dev/null 2>&1; do
      [ "$SECONDS" -lt "$deadline" ] || die "kube-network-policies did not install its nftables table"
      sleep 0.2
    done
  fi
  log "kube-network-policies listening on queue $queue (log: $state/kube-network-policies.log)"
}

stop_agent() { # SIGINT is what it handles (it removes its table and exits after 5 s); then SIGKILL
  local pid
  [ -f "$state/agent.pid" ] || return 0
  pid=$(cat "$state/agent.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/agent.pid"
}

clean_pods() {
  local name
  for name in $(ip netns list 2>/dev/null | awk '$1 ~ /^ztdp/ {print $1}'); do
    ip netns del "$name" 2>/dev/null || true
  done
  for name in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^ztdp/ {sub(/@.*/, "", $2); print $2}'); do
    ip link del "$name" 2>/dev/null || true
  done
  if command -v conntrack >/dev/null; then
    conntrack -D -s "$cidr" >/dev/null 2>&1 || true
    conntrack -D -d "$cidr" >/dev/null 2>&1 || true
  fi
}

# --- commands ------------------------------------------------------------------------------------
up() {
  "$repo/hack/controlplane.sh" status ||
    die "the control plane is not running: start it first (hack/controlplane.sh up)"
  mkdir -p "$state"
  exec 9>"$state/lock"
  flock 9
  if alive && listening && [ "$(cat "$state/apiserver" 2>/dev/null)" = "$(apiserver)" ]; then
    log "already running"
  else
    stop_agent
    check >"$state/hook"
    build >/dev/null
    credentials
    install_hook_for "$(cat "$state/hook")"
    start_agent
  fi
  echo "node=$node"
  echo "cidr=$cidr"
  echo "gateway=$gateway"
  echo "hook=$(cat "$state/hook")"
  echo "metrics=$(cat "$state/metrics")"
  echo "log=$state/kube-network-policies.log"
}

install_hook_for() {
  remove_hook
  [ "$1" = xt ] && install_hook
  install_no_leak
}

down() {
  if [ -d "$state" ]; then
    stop_agent
  fi
  clean_pods
  remove_hook
  if command -v nft >/dev/null; then
    nft delete table inet "$agent_table" 2>/dev/null || true
    nft delete table inet "$probe_table" 2>/dev/null || true
  fi
  log "stopped and cleaned up"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  clean-pods) clean_pods ;;
  check) check ;;
  build) build ;;
  status) alive && listening ;;
  *)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
