#!/usr/bin/env bash
# Try one room on several nodes, on one machine: three nats-server
# processes routed into one cluster with JetStream
# (contrib/nats-cluster.conf), two or three chat nodes in cluster mode with
# the room's stream on three replicas, and nginx in front of the nodes
# (the upstream of contrib/nginx.conf and the site of
# contrib/nginx-proxy.conf, on plain HTTP), all on loopback. Ctrl-C stops
# everything.
#
# Usage:
#   contrib/try-cluster.sh [NODES]    start it, with 2 or 3 nodes (default 3)
#   contrib/try-cluster.sh check      start it with 3 nodes, post through
#                                     nginx, kill -9 a node, post again,
#                                     start the node again, compare every
#                                     node's history, stop (exit 0 if all
#                                     went as it should)
#   contrib/try-cluster.sh nginx-conf DIR PORT HOST:PORT...
#                                     print the loopback nginx configuration
#                                     for those nodes (files go under DIR)
#
# Needs nats-server 2.11 or newer (go install
# github.com/nats-io/nats-server/v2@v2.15.3), nginx, curl, and go to
# build the server (or CHAT_BIN, a chat binary).
#
# Environment:
#   TRY_PORT  nginx's port (default 7000); node k listens on TRY_PORT+k,
#             NATS server k on TRY_PORT+10+k for clients, TRY_PORT+20+k
#             for its routes and TRY_PORT+30+k for monitoring
#   TRY_DIR   where the stores and logs go (default: a temporary
#             directory, removed at the end)
#   CHAT_BIN  the chat binary to run (default: built from this tree)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf 'try-cluster: %s\n' "$*"; }
die() {
	printf 'try-cluster: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '/^# Usage:/,/^# Needs/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

# nginx_conf prints nginx's main configuration for the nodes ($3...):
# listening on 127.0.0.1:$2, with its pid, logs and temporary files under
# $1, the upstream block of contrib/nginx.conf with one server line per
# node (with the parameters of the line it replaces), and the site of
# contrib/nginx-proxy.conf.
nginx_conf() {
	local dir=$1 port=$2
	shift 2
	local upstream zone
	zone=$(grep '^limit_conn_zone ' "$repo/contrib/nginx.conf") ||
		die "contrib/nginx.conf has no limit_conn_zone line"
	upstream=$(awk -v nodes="$*" '
		/^upstream chat \{/ { up = 1 }
		!up { next }
		/^ *#/ || /^ *$/ { next }
		/^ *server 127\.0\.0\.1:6969 / {
			n = split(nodes, node, " ")
			for (i = 1; i <= n; i++) {
				line = $0
				sub(/127\.0\.0\.1:6969/, node[i], line)
				print "    " line
			}
			next
		}
		{ print "    " $0 }
		/^\}/ { exit }
	' "$repo/contrib/nginx.conf")
	[ "$(grep -c '^ *server ' <<<"$upstream")" -eq $# ] ||
		die "contrib/nginx.conf: no 'server 127.0.0.1:6969 ...;' line in 'upstream chat' to put the nodes in"
	cat <<EOF
# nginx on loopback in front of the nodes of contrib/try-cluster.sh: the
# upstream of contrib/nginx.conf with these nodes, and the site of
# contrib/nginx-proxy.conf, on plain HTTP.
daemon off;
worker_processes 1;
pid "$dir/nginx.pid";
error_log "$dir/nginx-error.log";
events {
    worker_connections 4096;
}
http {
    # Which node served each request, and which it tried first.
    log_format upstreams '\$request_method \$uri \$status key=\$http_idempotency_key upstream=\$upstream_addr \$upstream_status';
    access_log "$dir/nginx-access.log" upstreams;
    client_body_temp_path "$dir/nginx-body";
    proxy_temp_path "$dir/nginx-proxy";
    fastcgi_temp_path "$dir/nginx-fastcgi";
    uwsgi_temp_path "$dir/nginx-uwsgi";
    scgi_temp_path "$dir/nginx-scgi";

    $zone
$upstream

    server {
        listen 127.0.0.1:$port;
        include "$repo/contrib/nginx-proxy.conf";
    }
}
EOF
}

# find_nats_server prints the nats-server to run: in PATH, else in
# $(go env GOPATH)/bin.
find_nats_server() {
	if command -v nats-server >/dev/null; then
		command -v nats-server
	elif command -v go >/dev/null && [ -x "$(go env GOPATH)/bin/nats-server" ]; then
		echo "$(go env GOPATH)/bin/nats-server"
	else
		die "no nats-server: go install github.com/nats-io/nats-server/v2@v2.15.3"
	fi
}

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pids=()  # every process started, in order
names=() # and what each is

# spawn runs "$@" in the background with its output in $log, and
# remembers it as $what.
spawn() {
	local what=$1 log=$2
	shift 2
	"$@" >"$log" 2>&1 &
	pids+=("$!")
	names+=("$what")
}

# wait_http waits up to 30 s for $1 to answer 2xx; $2 says what answers
# there, $3 is its pid, which must still run.
wait_http() {
	local i
	for ((i = 0; i < 300; i++)); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || die "$2 exited at start; its log is in $dir"
		sleep 0.1
	done
	die "$2 did not answer $1 within 30 s; its log is in $dir"
}

# stop_all ends every process started (SIGTERM, then SIGKILL after 10 s)
# and removes the directory unless TRY_DIR named it.
stop_all() {
	local i p
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [ -z "${TRY_DIR:-}" ] && [ -n "${dir:-}" ]; then
		rm -rf "$dir"
	fi
}

# nats_urls prints the NATS URLs for node $1: its own server first.
nats_urls() {
	local k=$1 j urls
	urls="nats://127.0.0.1:$((base + 10 + k))"
	for j in 1 2 3; do
		[ "$j" -eq "$k" ] || urls+=",nats://127.0.0.1:$((base + 10 + j))"
	done
	echo "$urls"
}

# start_node starts chat node $1 and waits until it serves.
start_node() {
	local k=$1
	spawn "node $k" "$dir/node$k.log" "$chat" -addr "127.0.0.1:$((base + k))" \
		-nats "$(nats_urls "$k")" -nats-replicas 3 -trusted-proxies 127.0.0.1
	node_pid[k]=${pids[-1]}
	wait_http "http://127.0.0.1:$((base + k))/healthz" "node $k" "${node_pid[k]}"
}

# start starts the NATS servers, $1 nodes and nginx.
start() {
	local nodes=$1 k p routes="" nats
	nats=$(find_nats_server)
	command -v nginx >/dev/null || die "no nginx (apt-get install nginx)"
	command -v curl >/dev/null || die "no curl (apt-get install curl)"
	for p in "$base" $(seq $((base + 1)) $((base + nodes))) $(seq $((base + 11)) $((base + 13))) \
		$(seq $((base + 21)) $((base + 23))) $(seq $((base + 31)) $((base + 33))); do
		port_free "$p" || die "port $p is taken: set TRY_PORT to another base port"
	done

	dir=${TRY_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/try-cluster.XXXXXX")}
	mkdir -p "$dir"
	chmod 0755 "$dir" # nginx's workers may run as another user
	trap stop_all EXIT
	trap 'exit 130' INT TERM

	chat=${CHAT_BIN:-}
	if [ -z "$chat" ]; then
		say "building the chat server"
		chat=$dir/chat
		(cd "$repo" && go build -o "$chat" .)
	fi

	for k in 1 2 3; do
		routes+="${routes:+,}nats://127.0.0.1:$((base + 20 + k))"
	done
	for k in 1 2 3; do
		spawn "nats-server n$k" "$dir/n$k.log" "$nats" -c "$repo/contrib/nats-cluster.conf" \
			-n "n$k" -a 127.0.0.1 -p $((base + 10 + k)) -m $((base + 30 + k)) -sd "$dir/n$k" \
			--cluster_name chat --cluster "nats://127.0.0.1:$((base + 20 + k))" --routes "$routes"
		nats_pid[k]=${pids[-1]}
	done
	for k in 1 2 3; do
		wait_http "http://127.0.0.1:$((base + 30 + k))/healthz" "nats-server n$k" "${nats_pid[k]}"
	done
	say "NATS servers n1 n2 n3 up, routed into one cluster"
	local jsz
	jsz=$(curl -fsS "http://127.0.0.1:$((base + 31))/jsz?config=true")
	grep -q '"sync_always": *true' <<<"$jsz" ||
		die "nats-server n1 does not sync every write: is contrib/nats-server.conf included?"

	# One after the other: the first makes the stream.
	local addrs=()
	for ((k = 1; k <= nodes; k++)); do
		start_node "$k"
		addrs+=("127.0.0.1:$((base + k))")
	done
	say "$nodes nodes up"

	nginx_conf "$dir" "$base" "${addrs[@]}" >"$dir/nginx.conf"
	spawn nginx "$dir/nginx.out" nginx -e "$dir/nginx-error.log" -p "$dir" -c "$dir/nginx.conf"
	nginx_pid=${pids[-1]}
	wait_http "http://127.0.0.1:$base/healthz" nginx "$nginx_pid"
}

# summary says what runs where.
summary() {
	local nodes=$1 k
	printf '\nThe room: http://127.0.0.1:%d/ (nginx, in front of every node)\n\n' "$base"
	for ((k = 1; k <= nodes; k++)); do
		printf '  node %-3shttp://127.0.0.1:%d  pid %s  log %s\n' "$k" $((base + k)) "${node_pid[k]}" "$dir/node$k.log"
	done
	for k in 1 2 3; do
		printf '  NATS n%-2snats://127.0.0.1:%d  pid %s  monitoring http://127.0.0.1:%d  log %s\n' \
			"$k" $((base + 10 + k)) "${nats_pid[k]}" $((base + 30 + k)) "$dir/n$k.log"
	done
	cat <<EOF
  nginx    pid $nginx_pid  access log $dir/nginx-access.log (which node served each request)

Open the room in a browser, then kill a node (kill -9 <pid>) or a NATS
server: the page goes on through the others. Ctrl-C stops everything.
EOF
}

# post posts $2 as $1 through nginx, with the Idempotency-Key $3 if
# given, and prints the answer's status and body on one line.
post() {
	local key=() out
	[ -n "${3:-}" ] && key=(-H "Idempotency-Key: $3")
	out=$(curl -sS --max-time 20 -w '\n%{http_code}' -H 'Content-Type: application/json' "${key[@]}" \
		-d "{\"username\":\"$1\",\"content\":\"$2\"}" "http://127.0.0.1:$base/post")
	printf '%s %s\n' "${out##*$'\n'}" "$(head -n1 <<<"$out")"
}

# history_ids prints the ids of node $1's whole history (the last 100
# messages), one line.
history_ids() {
	curl -fsS --max-time 10 "http://127.0.0.1:$((base + $1))/history?limit=100" |
		grep -o '"id":"[0-9]*-[0-9]*"' | cut -d'"' -f4 | paste -sd' ' -
}

# expect_201 fails unless the answer printed by post ends in 201.
expect_201() {
	echo "  $1"
	[[ $1 == "201 "* ]] || die "the post was not stored: $1"
}

# check runs the scripted tour: posts through nginx, a node killed, posts
# again, the node back, and every node's history the same.
check() {
	local k out ids want
	say "POST through nginx"
	expect_201 "$(post ann 'hello from nginx')"
	expect_201 "$(post bob 'a post with a key' key-1)"
	say "kill -9 node 1 (pid ${node_pid[1]})"
	kill -KILL "${node_pid[1]}"
	wait "${node_pid[1]}" 2>/dev/null || true
	say "POST through nginx with node 1 dead"
	for k in 2 3 4; do
		expect_201 "$(post cy "after the kill $k" "key-$k")"
	done
	expect_201 "$(post dee 'after the kill, no key')"
	say "the same key again: the message stored the first time"
	out=$(post cy 'after the kill 2' key-2)
	echo "  $out"
	[[ $out == "200 "* ]] || die "a repeated key was not answered 200: $out"
	say "start node 1 again"
	start_node 1
	want=$(history_ids 2)
	[ "$(wc -w <<<"$want")" -eq 6 ] || die "node 2 holds $(wc -w <<<"$want") messages, want 6: $want"
	for k in 1 2 3; do
		ids=$(history_ids "$k")
		echo "  node $k history: $ids"
		[ "$ids" = "$want" ] || die "node $k's history differs from node 2's"
	done
	say "nginx's access log (a post after the kill may show node 1 tried first):"
	sed 's/^/  /' "$dir/nginx-access.log"
	say "check passed"
}

main() {
	base=${TRY_PORT:-7000}
	local what=${1:-3}
	case "$what" in
	nginx-conf)
		[ $# -ge 4 ] || usage
		shift
		nginx_conf "$@"
		;;
	check)
		start 3
		check
		;;
	2 | 3)
		start "$what"
		summary "$what"
		wait
		;;
	*) usage ;;
	esac
}

main "$@"
