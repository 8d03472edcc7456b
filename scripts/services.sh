#!/usr/bin/env bash
# Make sure the backing services the tests talk to are installed and answering
# on their standard localhost ports. Installs missing ones from Debian's
# packages and starts stopped ones. Safe to run repeatedly.
#
# Usage: scripts/services.sh [redis] [postgresql] [mosquitto] [rabbitmq] [nats]
#        (default: all we use)
set -euo pipefail

wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(redis postgresql mosquitto rabbitmq nats)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
need_pkg() { # need_pkg <command> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  echo "services: installing $2 from Debian's packages"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # wait_port <name> <port> <seconds>
  local i
  for ((i = 0; i < $3 * 10; i++)); do port_open "$2" && return 0; sleep 0.1; done
  echo "services: $1 did not come up on 127.0.0.1:$2" >&2
  return 1
}

start_redis() {
  need_pkg redis-server redis-server
  port_open 6379 && return 0
  echo "services: starting redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port redis 6379 10
}

start_postgresql() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    need_pkg __none__ postgresql
  fi
  need_pkg psql postgresql-client
  if ! port_open 5432; then
    echo "services: starting postgresql"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port postgresql 5432 30
  fi
  # The tests connect as user postgres over TCP to database "test".
  if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
    if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
      echo "services: postgresql does not accept user postgres over TCP without a password;" \
        "allow it in pg_hba.conf (trust for 127.0.0.1)" >&2
      return 1
    fi
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test' >/dev/null
  fi
}

start_mosquitto() {
  # By path: /usr/sbin is often missing from a normal user's PATH.
  need_pkg /usr/sbin/mosquitto mosquitto
  port_open 1883 && return 0
  echo "services: starting mosquitto"
  # Debian's config drops to user mosquitto and keeps its pid, log and
  # persistence under these directories; /run may have been emptied by a reboot.
  as_root install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto \
    /var/lib/mosquitto
  as_root /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port mosquitto 1883 10
}

start_rabbitmq() {
  need_pkg /usr/sbin/rabbitmq-server rabbitmq-server
  port_open 5672 && return 0
  echo "services: starting rabbitmq (this takes several seconds)"
  # The tests log in as guest/guest, which RabbitMQ allows from localhost only.
  as_root /usr/sbin/rabbitmq-server -detached
  wait_port rabbitmq 5672 60
}

start_nats() {
  need_pkg /usr/sbin/nats-server nats-server
  port_open 4222 && return 0
  echo "services: starting nats-server (JetStream)"
  as_root mkdir -p /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port nats 4222 10
}

for s in "${wanted[@]}"; do
  case "$s" in
    redis) start_redis ;;
    postgresql) start_postgresql ;;
    mosquitto) start_mosquitto ;;
    rabbitmq) start_rabbitmq ;;
    nats) start_nats ;;
    *) echo "services: unknown service $s" >&2; exit 2 ;;
  esac
done
echo "services: ${wanted[*]} ready"
