#!/usr/bin/env bash
# Starts a single-node OpenStack Swift with its S3 layer (s3api + tempauth) for the object-storage contract tests.
#
# Why Swift: it is packaged by Debian, needs no container runtime, and its s3api checks SigV4 signatures (header and
# presigned), so a test that passes here has really been signed correctly.
#
# Usage:
#   eval "$(scripts/ci/start-swift.sh)"          # configure + start (idempotent), then exports TEST_STORAGE_URL
#   TEST_STORAGE_URL=... npx vitest run lib/storage
#   scripts/ci/start-swift.sh --stop             # stop the servers (data is kept)
#   scripts/ci/start-swift.sh --restart          # stop, rewrite the configuration, start again
#   scripts/ci/start-swift.sh --status           # exit 0 and print the export line when the proxy answers
#
# Progress goes to stderr; stdout carries only the `export TEST_STORAGE_URL=...` line.
# Needs: apt-get install -y swift swift-proxy swift-account swift-container swift-object python3-swift
#
# Environment (all optional):
#   SWIFT_LCD_ROOT      state folder: configs, rings, data, logs, pids   (default /srv/swift-lcd)
#   SWIFT_PROXY_PORT    S3/Swift proxy port on 127.0.0.1                 (default 8080)
#   SWIFT_PORT_BASE     object=base, container=base+1, account=base+2    (default 6200)
#   SWIFT_BUCKET        bucket created for the tests                     (default lcd-test)
#   SWIFT_START_TIMEOUT seconds to wait for the servers                  (default 60)
set -euo pipefail

ROOT=${SWIFT_LCD_ROOT:-/srv/swift-lcd}
PROXY_PORT=${SWIFT_PROXY_PORT:-8080}
PORT_BASE=${SWIFT_PORT_BASE:-6200}
BUCKET=${SWIFT_BUCKET:-lcd-test}
START_TIMEOUT=${SWIFT_START_TIMEOUT:-60}
BIND_IP=127.0.0.1
REGION=us-east-1
ACCESS_KEY='test:tester' # tempauth user "tester" in account "test"; for s3api the access key is "account:user"
SECRET_KEY='testing'
# The Swift servers are Python scripts for the system interpreter; a pyenv/venv python3 earlier on PATH lacks swift.
PYTHON=/usr/bin/python3

OBJECT_PORT=$PORT_BASE
CONTAINER_PORT=$((PORT_BASE + 1))
ACCOUNT_PORT=$((PORT_BASE + 2))
ETC=$ROOT/etc
DEVICES=$ROOT/node
RUN=$ROOT/run
LOG=$ROOT/log
SERVERS=(account container object proxy)

log() { printf '[start-swift] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

server_port() {
  case $1 in
    account) echo "$ACCOUNT_PORT" ;;
    container) echo "$CONTAINER_PORT" ;;
    object) echo "$OBJECT_PORT" ;;
    proxy) echo "$PROXY_PORT" ;;
  esac
}

# The pid is ours only while /proc says it still runs our binary with our config (pids get reused).
server_pid() {
  local pidfile=$RUN/$1.pid pid cmdline
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$ETC/$1-server.conf"* ]] || return 1
  echo "$pid"
}

# Prints the HTTP status of GET http://127.0.0.1:<port><path>, or 000 when nothing answers. Plain bash (/dev/tcp):
# polled many times while the servers start, so no interpreter start-up per poll.
http_status() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n" "$3" "$1" "$2" >&3
    IFS=" " read -r _ status _ <&3
    echo "${status:-000}"' _ "$BIND_IP" "$1" "$2" 2>/dev/null || echo 000
}

port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$BIND_IP" "$1" 2>/dev/null; }

memcached_running() { port_open 11211; }

healthy() { [[ $(http_status "$(server_port "$1")" /healthcheck) == 200 ]]; }

stop_servers() {
  local name pid pids=() i
  for name in proxy object container account; do
    if pid=$(server_pid "$name"); then
      log "stopping $name-server (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$RUN/$name.pid"
  done
  # All at once: each takes a few seconds to let its workers finish.
  for pid in ${pids[@]+"${pids[@]}"}; do
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done
}

check_prerequisites() {
  local bin
  for bin in swift-ring-builder swift-proxy-server swift-account-server swift-container-server swift-object-server; do
    command -v "$bin" >/dev/null || die "$bin not found: apt-get install -y swift swift-proxy swift-account swift-container swift-object python3-swift"
  done
  [[ -x $PYTHON ]] || die "$PYTHON not found (python3-swift installs it)"
  "$PYTHON" -c 'import swift.common.middleware.s3api' 2>/dev/null || die "python3-swift with s3api is not importable by $PYTHON"
  # Every Swift process reads /etc/swift/swift.conf for the hash path secret and storage policies, whatever swift_dir
  # says; the Debian package ships one. Only write one where it is missing, never change an existing one.
  if [[ ! -f /etc/swift/swift.conf ]]; then
    log "writing /etc/swift/swift.conf (missing)"
    mkdir -p /etc/swift
    cat >/etc/swift/swift.conf <<EOF
[swift-hash]
swift_hash_path_suffix = lcd-ci-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
swift_hash_path_prefix = lcd-ci

[storage-policy:0]
name = Policy-0
default = yes
EOF
  fi
}

write_configs() {
  local user
  user=$(id -un) # run as whoever starts us: no privilege drop, so no chown of the data folder
  mkdir -p "$ETC" "$DEVICES/d1" "$RUN" "$LOG" || die "cannot create $ROOT (set SWIFT_LCD_ROOT to a writable folder)"

  local name
  for name in account container object; do
    cat >"$ETC/$name-server.conf" <<EOF
# Generated by scripts/ci/start-swift.sh: rewritten on every start.
[DEFAULT]
bind_ip = $BIND_IP
bind_port = $(server_port "$name")
workers = 1
user = $user
swift_dir = $ETC
devices = $DEVICES
# A plain directory, not a mounted xfs disk.
mount_check = false
disable_fallocate = true
log_name = $name-server
log_level = WARNING

[pipeline:main]
pipeline = healthcheck $name-server

[app:$name-server]
use = egg:swift#$name

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
  done

  # memcached is optional: tempauth needs the cache middleware in the pipeline, but S3 requests are authenticated by
  # signature on every request and never need a cached token, so the pipeline works whether memcached runs or not.
  # Without it the cache middleware would log an error per request: silence it then.
  local cache_log_level=WARNING
  if ! memcached_running; then
    log "memcached is not running on 127.0.0.1:11211: running without it"
    cache_log_level=CRITICAL
  fi
  cat >"$ETC/proxy-server.conf" <<EOF
# Generated by scripts/ci/start-swift.sh: rewritten on every start.
[DEFAULT]
bind_ip = $BIND_IP
bind_port = $PROXY_PORT
workers = 1
user = $user
swift_dir = $ETC
log_name = proxy-server
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl ratelimit s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
# The first S3 request of the tempauth account creates it.
account_autocreate = true
allow_account_management = true

[filter:s3api]
use = egg:swift#s3api
location = $REGION
# Presigned URLs may live up to a week, as on AWS; requests must be signed within 15 minutes of the server clock.
allowable_clock_skew = 900

[filter:tempauth]
use = egg:swift#tempauth
# S3 access key "test:tester", secret "testing".
user_test_tester = testing .admin
token_life = 86400

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11211
# "set": a plain key in a filter section loses to [DEFAULT] under paste.deploy.
set log_level = $cache_log_level

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:ratelimit]
use = egg:swift#ratelimit

[filter:copy]
use = egg:swift#copy

[filter:container-quotas]
use = egg:swift#container_quotas

[filter:account-quotas]
use = egg:swift#account_quotas

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes
EOF
}

# One device, one replica: every partition lives on d1, so rebuilding the rings never moves data. Rebuilt only when
# the ports they name change.
build_rings() {
  local stamp="ports=$ACCOUNT_PORT,$CONTAINER_PORT,$OBJECT_PORT"
  if [[ -f $ETC/rings.stamp && $(<"$ETC/rings.stamp") == "$stamp" \
        && -f $ETC/account.ring.gz && -f $ETC/container.ring.gz && -f $ETC/object.ring.gz ]]; then
    return
  fi
  log "building rings ($stamp)"
  local name rc
  for name in account container object; do
    rm -f "$ETC/$name.builder" "$ETC/$name.ring.gz"
    rm -rf "$ETC/backups"
    swift-ring-builder "$ETC/$name.builder" create 10 1 1 >/dev/null
    swift-ring-builder "$ETC/$name.builder" add "r1z1-$BIND_IP:$(server_port "$name")/d1" 1 >/dev/null
    # Exit status 1 is a warning (e.g. "balance could be better"), not a failure.
    rc=0
    swift-ring-builder "$ETC/$name.builder" rebalance >/dev/null || rc=$?
    ((rc <= 1)) || die "swift-ring-builder rebalance for $name failed (exit $rc)"
  done
  echo "$stamp" >"$ETC/rings.stamp"
}

start_servers() {
  local name pid
  for name in "${SERVERS[@]}"; do
    if pid=$(server_pid "$name"); then
      log "$name-server already running (pid $pid)"
      continue
    fi
    if port_open "$(server_port "$name")"; then
      die "port $(server_port "$name") is taken by another process; set SWIFT_PROXY_PORT / SWIFT_PORT_BASE"
    fi
    log "starting $name-server on $BIND_IP:$(server_port "$name") (log: $LOG/$name.log)"
    # setsid: the servers outlive this script and the shell or CI step that ran it. -v: log to the console (our file).
    setsid "$PYTHON" "$(command -v "swift-$name-server")" "$ETC/$name-server.conf" -v \
      </dev/null >>"$LOG/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
  done
}

wait_healthy() {
  local deadline=$((SECONDS + START_TIMEOUT)) name
  for name in "${SERVERS[@]}"; do
    until healthy "$name"; do
      if ! server_pid "$name" >/dev/null; then
        tail -n 30 "$LOG/$name.log" >&2 || true
        die "$name-server exited; see $LOG/$name.log"
      fi
      ((SECONDS < deadline)) || die "$name-server did not answer within ${START_TIMEOUT}s; see $LOG/$name.log"
      sleep 0.2
    done
  done
  log "all servers answer /healthcheck"
}

# PUT /<bucket> signed with SigV4, as any S3 client would. 200: created; 409 BucketAlreadyOwnedByYou: it exists.
# Prints the HTTP status. Retried by the caller: right after a first start the account may still be being created.
s3_create_bucket() {
  "$PYTHON" - "$BIND_IP:$PROXY_PORT" "$BUCKET" "$REGION" "$ACCESS_KEY" "$SECRET_KEY" <<'PY'
import datetime, hashlib, hmac, sys, urllib.request, urllib.error
host, bucket, region, access_key, secret_key = sys.argv[1:6]
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, date = now.strftime('%Y%m%dT%H%M%SZ'), now.strftime('%Y%m%d')
payload_hash = hashlib.sha256(b'').hexdigest()
signed_headers = 'host;x-amz-content-sha256;x-amz-date'
canonical_request = '\n'.join([
    'PUT', '/' + bucket, '',
    f'host:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n',
    signed_headers, payload_hash])
scope = f'{date}/{region}/s3/aws4_request'
string_to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                            hashlib.sha256(canonical_request.encode()).hexdigest()])
def hm(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
signing_key = hm(hm(hm(hm(('AWS4' + secret_key).encode(), date), region), 's3'), 'aws4_request')
signature = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
request = urllib.request.Request(f'http://{host}/{bucket}', method='PUT', data=b'', headers={
    'x-amz-content-sha256': payload_hash,
    'x-amz-date': amz_date,
    'Authorization': f'AWS4-HMAC-SHA256 Credential={access_key}/{scope}, '
                     f'SignedHeaders={signed_headers}, Signature={signature}',
})
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    body = error.read().decode('utf-8', 'replace')
    print(error.code, body.replace('\n', ' ')[:300])
except Exception as error:
    print('000', error)
PY
}

ensure_bucket() {
  local deadline=$((SECONDS + START_TIMEOUT)) result
  while :; do
    result=$(s3_create_bucket)
    case $result in
      200*) log "bucket $BUCKET created"; return ;;
      409*BucketAlreadyOwnedByYou*|409*BucketAlreadyExists*) log "bucket $BUCKET exists"; return ;;
    esac
    ((SECONDS < deadline)) || die "could not create bucket $BUCKET: $result"
    sleep 0.5
  done
}

storage_url() {
  # The access key "test:tester" holds a colon, which userinfo must percent-encode.
  printf 's3://%s:%s@%s?endpoint=http://%s:%s&region=%s' "test%3Atester" "$SECRET_KEY" "$BUCKET" "$BIND_IP" \
    "$PROXY_PORT" "$REGION"
}

main() {
  case ${1:-} in
    --stop) stop_servers; exit 0 ;;
    --status)
      healthy proxy || die "proxy does not answer on $BIND_IP:$PROXY_PORT"
      echo "export TEST_STORAGE_URL='$(storage_url)'"
      exit 0 ;;
    --restart) stop_servers ;;
    '') ;;
    *) die "unknown argument $1 (use --stop, --restart or --status)" ;;
  esac
  check_prerequisites
  write_configs
  build_rings
  start_servers
  wait_healthy
  ensure_bucket
  echo "export TEST_STORAGE_URL='$(storage_url)'"
}

main "$@"
