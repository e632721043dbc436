#!/usr/bin/env bash
# record_samples.sh: records real loopback traffic of real programs, one folder
# of pcap files per class, for tl's shipped samples (data/samples/README.md).
#
#   sudo data/record_samples.sh [OUT_DIR]          (default: data/samples)
#
# Classes: tls12 and tls13 (openssl s_server -rev / s_client), ssh (sshd on a
# high port with throwaway keys, ssh running commands), http (curl against
# python3 -m http.server), dns (dig against dnsmasq). Each class is recorded in
# PARTS sessions, one pcap file per session, so a split by source file is
# possible. Servers listen on 127.0.0.1 high ports only; every server and
# capture this script starts is stopped by its process id.
#
# Environment: SCALE (default 1) multiplies the flow counts; PARTS (default 4);
# SEED (default 7) seeds bash's $RANDOM, which picks sizes, ciphers and commands.
# Needs root for tcpdump on lo; installs missing tools with apt-get.
set -euo pipefail

OUT=${1:-data/samples}
SCALE=${SCALE:-1}
PARTS=${PARTS:-4}
RANDOM=${SEED:-7}
PORT_TLS12=24433 PORT_TLS13=24434 PORT_SSH=22222 PORT_HTTP=28080 PORT_DNS=25353

# --- tools: install what is missing (Debian package names)
need() { command -v "$1" >/dev/null 2>&1 || MISSING+=("$2"); }
MISSING=()
need tcpdump tcpdump; need openssl openssl; need sshd openssh-server; need ssh openssh-client
need dnsmasq dnsmasq-base; need dig bind9-dnsutils; need curl curl; need python3 python3
if ((${#MISSING[@]})); then
  echo "installing: ${MISSING[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}"
fi

WORK=$(mktemp -d /tmp/tl-record.XXXXXX)
PIDS=()
# Stops what we started, by pid, whatever way the script ends.
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Starts a background server and remembers its pid.
start() { "$@" >>"$WORK/servers.log" 2>&1 & PIDS+=($!); }

# Waits until something listens on a TCP port (or a UDP port: arg 2 = udp).
wait_port() {
  for _ in $(seq 100); do
    if [ "${2:-tcp}" = udp ]; then ss -lun | grep -q ":$1 " && return 0
    else ss -ltn | grep -q ":$1 " && return 0; fi
    sleep 0.1
  done
  echo "server on port $1 did not start; see $WORK/servers.log" >&2; cat "$WORK/servers.log" >&2
  exit 1
}

# Records one part of one class: runs the function $3 with a flow count while
# tcpdump captures the port $2 on lo into OUT/class/class-part.pcap.
record() {
  local class=$1 port=$2 fn=$3 flows=$4 part=$5
  mkdir -p "$OUT/$class"
  local file="$OUT/$class/$class-$part.pcap"
  tcpdump -i lo -U -w "$file" "port $port" 2>>"$WORK/tcpdump.log" &
  local tpid=$!
  sleep 1 # let tcpdump attach before the first packet
  for i in $(seq "$flows"); do "$fn" "$i"; done
  sleep 1
  kill -INT "$tpid"; wait "$tpid" || true
  echo "$class part $part: $flows flows, $(stat -c %s "$file") bytes"
}

# Random base64 text of 1 to $1 bytes of entropy.
rand_text() { head -c $((RANDOM % $1 + 1)) /dev/urandom | base64 -w 76; }

# --- TLS: one s_server per version in echo-reversed mode; a client sends a few
# random lines, reads the replies and says CLOSE.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj /CN=tl-samples.lan -keyout "$WORK/ec.key" -out "$WORK/ec.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=tl-samples.lan \
  -keyout "$WORK/rsa.key" -out "$WORK/rsa.crt" 2>/dev/null
TLS12_CIPHERS=(ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384
  ECDHE-ECDSA-CHACHA20-POLY1305 ECDHE-ECDSA-AES128-SHA256)
TLS13_SUITES=(TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256)
tls_lines() {
  local n=$((RANDOM % 5 + 1))
  for _ in $(seq $n); do rand_text 600 | tr -d '\n'; echo; done
  echo CLOSE
}
tls12_flow() {
  local c=${TLS12_CIPHERS[RANDOM % ${#TLS12_CIPHERS[@]}]}
  tls_lines | timeout 5 openssl s_client -connect 127.0.0.1:$PORT_TLS12 -quiet -tls1_2 \
    -cipher "$c" -servername "host$((RANDOM % 50)).tl-samples.lan" >/dev/null 2>&1 || true
}
tls13_flow() {
  local c=${TLS13_SUITES[RANDOM % ${#TLS13_SUITES[@]}]}
  tls_lines | timeout 5 openssl s_client -connect 127.0.0.1:$PORT_TLS13 -quiet -tls1_3 \
    -ciphersuites "$c" -servername "host$((RANDOM % 50)).tl-samples.lan" >/dev/null 2>&1 || true
}
start openssl s_server -accept $PORT_TLS12 -cert "$WORK/ec.crt" -key "$WORK/ec.key" \
  -rev -tls1_2 -quiet
start openssl s_server -accept $PORT_TLS13 -cert "$WORK/rsa.crt" -key "$WORK/rsa.key" \
  -rev -tls1_3 -quiet
wait_port $PORT_TLS12; wait_port $PORT_TLS13

# --- SSH: a private sshd with throwaway host and client keys; the client runs
# one command per connection.
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
Port $PORT_SSH
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100
EOF
mkdir -p /run/sshd
start "$(command -v sshd)" -f "$WORK/sshd_config" -D -e
wait_port $PORT_SSH
SSH_CIPHERS=(chacha20-poly1305@openssh.com aes128-ctr aes256-gcm@openssh.com aes128-gcm@openssh.com)
SSH_CMDS=("uname -a" "date" "id" "ls -la /etc | head -n \$((RANDOM % 40 + 1))"
  "head -c \$((RANDOM % 3000 + 1)) /dev/urandom | base64" "cat /etc/os-release" "uptime"
  "echo \$RANDOM \$RANDOM" "ps -e | head -n 20" "df -h | head -n 5")
ssh_flow() {
  local c=${SSH_CIPHERS[RANDOM % ${#SSH_CIPHERS[@]}]}
  local cmd=${SSH_CMDS[RANDOM % ${#SSH_CMDS[@]}]}
  timeout 10 ssh -p $PORT_SSH -i "$WORK/client_key" -c "$c" -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    "$(id -un)@127.0.0.1" "$cmd" >/dev/null 2>&1 || true
}

# --- HTTP: python's http.server over a folder of random files; curl fetches
# files, missing paths, HEADs and POSTs (answered 501) with varied headers.
mkdir -p "$WORK/www"
for i in $(seq 0 59); do
  case $((i % 3)) in
    0) { echo "<html><body><pre>"; rand_text 3000; echo "</pre></body></html>"; } \
         >"$WORK/www/page$i.html" ;;
    1) printf '{"id": %d, "data": "%s"}\n' "$i" "$(rand_text 2000 | tr -d '\n')" \
         >"$WORK/www/item$i.json" ;;
    2) head -c $((RANDOM % 4000 + 1)) /dev/urandom >"$WORK/www/blob$i.bin" ;;
  esac
done
start python3 -m http.server $PORT_HTTP --bind 127.0.0.1 --directory "$WORK/www"
wait_port $PORT_HTTP
AGENTS=("curl/7.88" "Mozilla/5.0 (X11; Linux x86_64)" "tl-sampler/1.0" "Wget/1.21")
http_flow() {
  local files=("$WORK"/www/*) ua=${AGENTS[RANDOM % ${#AGENTS[@]}]}
  local f url
  f=$(basename "${files[RANDOM % ${#files[@]}]}")
  url="http://127.0.0.1:$PORT_HTTP/$f"
  case $((RANDOM % 8)) in
    0) url="http://127.0.0.1:$PORT_HTTP/missing$RANDOM.html" ;;
    1) curl -s -o /dev/null -I -A "$ua" "$url" || true; return ;;
    2) curl -s -o /dev/null -A "$ua" --data "q=$(rand_text 300 | tr -d '\n=+/')" "$url" || true
       return ;;
  esac
  curl -s -o /dev/null -A "$ua" -H "Accept-Language: en;q=0.$((RANDOM % 9 + 1))" "$url" || true
}

# --- DNS: dnsmasq answers for a made-up zone (A, AAAA, TXT, MX, PTR and
# NXDOMAIN); dig sends one query per run, each from a fresh port.
: >"$WORK/hosts"
for i in $(seq 0 199); do
  echo "10.$((i / 250)).$((i % 250)).$((RANDOM % 250 + 1)) node$i.tl-samples.lan" >>"$WORK/hosts"
  echo "fd00::$(printf %x $i):$(printf %x $RANDOM) node$i.tl-samples.lan" >>"$WORK/hosts"
done
DNS_ARGS=(--conf-file=/dev/null --no-daemon --port=$PORT_DNS --listen-address=127.0.0.1
  --bind-interfaces --no-resolv --no-hosts --addn-hosts="$WORK/hosts" --local=/tl-samples.lan/
  --mx-host=tl-samples.lan,mail.tl-samples.lan,10 --pid-file= --user=nobody)
for i in $(seq 0 19); do
  DNS_ARGS+=(--txt-record="t$i.tl-samples.lan,$(rand_text 150 | tr -d '\n')")
done
start dnsmasq "${DNS_ARGS[@]}"
wait_port $PORT_DNS udp
dns_flow() {
  local q
  case $((RANDOM % 6)) in
    0) q="node$((RANDOM % 200)).tl-samples.lan AAAA" ;;
    1) q="t$((RANDOM % 20)).tl-samples.lan TXT" ;;
    2) q="tl-samples.lan MX" ;;
    3) q="nothere$RANDOM.tl-samples.lan A" ;;
    4) q="-x 10.0.$((RANDOM % 200)).1" ;;
    *) q="node$((RANDOM % 200)).tl-samples.lan A" ;;
  esac
  # shellcheck disable=SC2086 # q holds the name and type as two words
  dig @127.0.0.1 -p $PORT_DNS +tries=1 +time=1 $q >/dev/null 2>&1 || true
}

# --- record: PARTS sessions per class
for part in $(seq "$PARTS"); do
  record tls12 $PORT_TLS12 tls12_flow $((75 * SCALE)) "$part"
  record tls13 $PORT_TLS13 tls13_flow $((75 * SCALE)) "$part"
  record ssh $PORT_SSH ssh_flow $((45 * SCALE)) "$part"
  record http $PORT_HTTP http_flow $((100 * SCALE)) "$part"
  record dns $PORT_DNS dns_flow $((120 * SCALE)) "$part"
done
du -sh "$OUT"
