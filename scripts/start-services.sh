#!/usr/bin/env bash
# Start the shared services the suite talks to, when they are not already running.
# Tests that need a particular server configuration start their own instance.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
if ! port_open 6379; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/readiness-ci-redis.log
fi
if ! port_open 5672; then
  rabbitmq-server -detached
  for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
fi
# The broker probe talks to RabbitMQ's management HTTP API.
if ! port_open 15672; then
  rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
  for _ in $(seq 1 60); do port_open 15672 && break; sleep 1; done
fi
echo "services: postgresql :5432, redis :6379, rabbitmq :5672 (management :15672) up"
