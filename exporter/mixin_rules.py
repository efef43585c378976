# ruff: noqa: E501  (PromQL and annotation lines of the YAML text are kept whole)
"""Source of the Prometheus rules `readiness-exporter mixin` renders.

Two rule files, as YAML text with three placeholders the renderer (exporter/mixin.py)
fills in: `__SEL__` (the user's label selector with a trailing comma, or nothing),
`__RUNBOOK__` (link to the alert's runbook section) and `__BOARD__` (the readiness
board's base URL). Policy (docs/alerting.md): checklist severity is not paging
severity; only the `critical` rules page, and each of them requires phase `live`; one
alert per cause; everything is aggregated across replicas (`max by (job, check)`).
"""

from __future__ import annotations

RULES_GROUP = "readiness-exporter.rules"
ALERTS_GROUP = "readiness-exporter.alerts"

# Recording rules. Label sets: `job` (one deployment of the exporter, whatever its
# replicas and shards), `check`, and the family labels of the measurement.
RECORDING_RULES = r"""
groups:
  - name: readiness-exporter.rules
    rules:
      # Latest status of each check, deduplicated across replicas and shards: 1 when
      # any replica reports that status.
      - record: readiness:check_status:max
        expr: max by (job, check, section, severity, status) (readiness_check_status{__SEL__})

      # Title, section title and kind of each check (for templates and tables).
      - record: readiness:check_info:max
        expr: |
          max by (job, check, section, section_title, title, kind) (
            readiness_check_info{__SEL__}
          )

      # 1 when every replica that runs the check reports its result stale (the
      # exporter's own definition; disabled checks are never stale).
      - record: readiness:check_stale:min
        expr: min by (job, check) (readiness_check_stale{__SEL__})

      # 1 while the deployment is in phase live (settings.phase), else 0.
      - record: readiness:phase_live:max
        expr: max by (job) (readiness_phase{__SEL__phase="live"})

      # Go-live across every shard and replica: 1 only when each exporter of the job
      # reads go-live 1 and none of them is down.
      - record: readiness:go_live
        expr: |
          min by (job) (
            readiness_go_live{__SEL__}
            or on (job, instance)
            (
              up{__SEL__} == 0
              and on (job, instance) last_over_time(readiness_exporter_build_info{__SEL__}[1d])
            )
          )

      # Checks that have passed since Prometheus first saw them (a latch: the series
      # keeps itself alive while the check exists). A failure of such a check is a
      # regression; a check that never passed is unfinished work.
      - record: readiness:check_passed:latch
        expr: |
          (
            max by (job, check) (readiness:check_status:max{status="pass"}) == 1
            or
            last_over_time(readiness:check_passed:latch[10m])
          )
          and on (job, check) readiness:check_info:max

      # Seconds until each certificate the exporter watches expires (negative when it
      # has expired), with a `certificate` identity label: `serial:<hex>` for served
      # chains and files (superseded file certificates left out), `secret:<ns>/<name>`
      # for Kubernetes TLS Secrets and `saml:<fingerprint>` for SAML signing
      # certificates. The check that sees it stays a label.
      - record: readiness:certificate_expiry:seconds
        expr: |
          label_replace(
            max without (instance, pod) (
              readiness_tls_endpoint_cert_not_after_timestamp_seconds{__SEL__}
            ) - time(),
            "certificate", "serial:$1", "serial", "(.+)")
          or
          label_replace(
            max without (instance, pod) (
              readiness_tls_file_cert_not_after_timestamp_seconds{__SEL__}
              unless on (job, instance, check, path, serial, subject_cn, fingerprint_sha256)
              readiness_tls_file_cert_info{__SEL__superseded="1"}
            ) - time(),
            "certificate", "serial:$1", "serial", "(.+)")
          or
          label_replace(label_join(
            max without (instance, pod) (
              readiness_kubernetes_tls_secret_expiry_timestamp_seconds{__SEL__}
            ) - time(),
            "certificate", "/", "namespace", "secret"),
            "certificate", "secret:$1", "certificate", "(.+)")
          or
          label_replace(
            max without (instance, pod) (
              readiness_http_saml_certificate_not_after_timestamp_seconds{__SEL__}
            ) - time(),
            "certificate", "saml:$1", "fingerprint", "(.+)")

      # Checks whose failure a specific alert already reports (certificate in its
      # renewal window, legacy TLS accepted, recovery point beyond its objective,
      # Redis persistence off): the generic check alerts leave them out.
      - record: readiness:check_specific_cause
        expr: |
          group by (job, check) (readiness:certificate_expiry:seconds < 30 * 86400)
          or
          group by (job, check) (
            readiness_tls_endpoint_version_info{__SEL__version=~"1\\.0|1\\.1", result="accepted"} == 1
          )
          or
          group by (job, check) (
            readiness_rpo_seconds{__SEL__}
              > on (job, instance, check, scenario) readiness_rpo_target_seconds{__SEL__}
          )
          or
          group by (job, check) (
            readiness_redis_rdb_last_bgsave_ok{__SEL__} == 0
            or readiness_redis_aof_last_write_ok{__SEL__} == 0
            or (
              readiness_redis_rdb_enabled{__SEL__} == 0
              and on (job, instance, check) readiness_redis_aof_enabled{__SEL__} == 0
            )
          )

      # Critical checks that page in live: they passed before, now fail or error, are
      # not an aggregate nor a post-go-live verdict (kind aggregate, section 11.3: they
      # summarise other signals) and no specific alert covers them.
      - record: readiness:critical_check_regressed
        expr: |
          max by (job, check) (
            readiness:check_status:max{severity="critical", status=~"fail|error"}
          ) == 1
          and on (job, check) readiness:check_passed:latch
          and on (job) (readiness:phase_live:max == 1)
          unless on (job, check) readiness:check_info:max{kind="aggregate"}
          unless on (job, check) readiness:check_info:max{section=~"11\\.3(\\..+)?"}
          unless on (job, check) readiness:check_specific_cause

      # Share of enabled checks of a checklist section whose latest run passed (0..1).
      # Skipped and disabled checks are left out of the denominator; a section whose
      # checks are all skipped or disabled has no score rather than a score of 0.
      - record: readiness:section_pass:ratio
        expr: |
          sum by (job, section) (readiness:check_status:max{status="pass"})
          /
          (sum by (job, section) (readiness:check_status:max{status!~"skipped|disabled"}) > 0)

      # The same score over every section.
      - record: readiness:pass:ratio
        expr: |
          sum by (job) (readiness:check_status:max{status="pass"})
          /
          (sum by (job) (readiness:check_status:max{status!~"skipped|disabled"}) > 0)

      # Number of checks per section, severity and status (1 per check in that status).
      - record: readiness:checks:count
        expr: sum by (job, section, severity, status) (readiness:check_status:max)

      # Age of each check's latest result, in check intervals (the newest replica).
      - record: readiness:check_age:intervals
        expr: |
          min by (job, check) (
            (time() - readiness_check_last_run_timestamp_seconds{__SEL__})
            / readiness_check_interval_seconds{__SEL__}
          )
"""

# Shared annotation fragments (Go templates evaluated by Prometheus).
_CHECK = (
    '{{ with printf "readiness:check_info:max{job=%q,check=%q}" $labels.job $labels.check'
    ' | query }}{{ with first . }}{{ .Labels.title }} (check {{ .Labels.check }},'
    ' section {{ .Labels.section }} {{ .Labels.section_title }}){{ end }}'
    '{{ else }}check {{ $labels.check }}{{ end }}'
)
_BOARD_ROW = "__BOARD__/check/{{ $labels.check }}"
_CERT_SERIES = (
    'printf "readiness:certificate_expiry:seconds{job=%q,certificate=%q}"'
    ' $labels.job $labels.certificate | query | sortByLabel "check"'
)
_INFO_OF_C = 'printf "readiness:check_info:max{job=%q,check=%q}" $labels.job $c | query'
_CERT_CHECKS = (
    '{{ range $i, $s := ' + _CERT_SERIES + ' }}{{ $c := $s.Labels.check }}'
    '{{ if $i }}; {{ end }}{{ with ' + _INFO_OF_C + ' }}{{ with first . }}'
    '{{ .Labels.title }} ({{ .Labels.section }} {{ .Labels.section_title }}){{ end }}'
    '{{ else }}check {{ $c }}{{ end }}, board row __BOARD__/check/{{ $c }}{{ end }}'
)
_CERT_FIRST_CHECK = (
    '{{ with ' + _CERT_SERIES + ' }}{{ with first . }}{{ $c := .Labels.check }}'
    '{{ with ' + _INFO_OF_C + ' }}{{ with first . }}{{ .Labels.title }}'
    ' ({{ .Labels.section }} {{ .Labels.section_title }}){{ end }}{{ else }}check {{ $c }}'
    '{{ end }}{{ end }}{{ end }}'
)
_CERT_FIRST_ROW = (
    '{{ with ' + _CERT_SERIES + ' }}{{ with first . }}__BOARD__/check/{{ .Labels.check }}'
    '{{ end }}{{ end }}'
)
_CERT_NAME = (
    '{{ with printf "readiness:certificate_expiry:seconds{job=%q,certificate=%q}"'
    ' $labels.job $labels.certificate | query }}{{ with first . }}'
    '{{ with .Labels.subject_cn }}{{ . }} {{ end }}{{ end }}{{ end }}({{ $labels.certificate }})'
)

# Alerting rules. `critical` pages; every critical rule requires phase live (in its
# expression, through readiness:critical_check_regressed, or by PHASE_GATED below).
ALERTING_RULES = r"""
groups:
  - name: readiness-exporter.alerts
    rules:
      # ------------------------------------------------------------------ checks
      - alert: ReadinessCriticalCheckRegressed
        expr: readiness:critical_check_regressed == 1
        for: 10m
        labels:
          severity: critical
        annotations:
          summary: "Regression: __CHECK__ is failing"
          description: >-
            __CHECK__ passed before and has reported fail or error for 10 minutes in
            phase live: go-live no longer holds. The exporter's latest message is on
            the board row __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessCriticalCheckFailing
        expr: |
          max by (job, check) (readiness:check_status:max{severity="critical", status="fail"}) == 1
          unless on (job, check) readiness:critical_check_regressed
          unless on (job, check) readiness:check_info:max{kind="aggregate"}
          unless on (job, check) readiness:check_info:max{section=~"11\\.3(\\..+)?"}
          unless on (job, check) readiness:check_specific_cause
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: "__CHECK__ is failing (blocks go-live)"
          description: >-
            __CHECK__, a critical check, has reported fail for 15 minutes: the target
            answered and is not ready. It blocks go-live; it does not page (it never passed, or
            the phase is not live). Latest message: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessCheckErroring
        expr: |
          max by (job, check, severity) (readiness:check_status:max{status="error"}) == 1
          unless on (job, check) readiness:critical_check_regressed
          unless on (job, check) readiness:check_info:max{kind="aggregate"}
          unless on (job, check) readiness:check_info:max{section=~"11\\.3(\\..+)?"}
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: "__CHECK__ cannot tell whether its target is ready"
          description: >-
            __CHECK__, a {{ $labels.severity }} check, has ended in error for 15 minutes;
            the reason is in readiness_check_errors_total{check="{{ $labels.check }}"}
            and the message on the board row __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessCheckStale
        expr: readiness:check_stale:min == 1
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: "__CHECK__ has no fresh result"
          description: >-
            The latest result of __CHECK__ is older than settings.stale_after_intervals
            run intervals plus its timeout on every exporter that runs it: the result
            shown is stale and go-live reads 0. Board row: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessGoLiveBlocked
        expr: |
          readiness:go_live == 0
          and on (job) max by (job) (readiness_phase{__SEL__phase="go-live"}) == 1
        for: 30m
        labels:
          severity: warning
        annotations:
          summary: "Go-live of {{ $labels.job }} is blocked"
          description: >-
            In phase go-live, readiness:go_live of job {{ $labels.job }} has been 0 for
            30 minutes: at least one enabled critical check is not passing or is stale,
            or an exporter is down. The board lists the blockers: __BOARD__ .
          board_url: "__BOARD__"
          runbook_url: "__RUNBOOK__"

      # ---------------------------------------------------------------- exporter
      # A target that exposed readiness_exporter_build_info in the last day and whose
      # scrape now fails. One replica or shard down is a ticket; every target down is
      # ReadinessExporterAbsent.
      - alert: ReadinessExporterDown
        expr: |
          up{__SEL__} == 0
          and on (job, instance) last_over_time(readiness_exporter_build_info{__SEL__}[1d])
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: "readiness-exporter {{ $labels.instance }} is down"
          description: >-
            Prometheus has failed to scrape readiness-exporter at {{ $labels.instance }}
            (job {{ $labels.job }}) for 5 minutes: the checks of this replica or shard
            reach no dashboard or alert, and readiness:go_live reads 0.
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessExporterAbsent
        expr: |
          absent(readiness_exporter_build_info{__SEL__})
          and on () (max(last_over_time(readiness:phase_live:max[1d])) == 1)
        for: 15m
        labels:
          severity: critical
        annotations:
          summary: "No readiness-exporter is reporting (phase live)"
          description: >-
            No target has exposed readiness_exporter_build_info to the Prometheus at
            {{ $externalURL }} for 15 minutes, after the deployment was live: no
            readiness alert can fire. The exporter is not deployed, not discovered or
            every instance is down.
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessExporterAbsent
        expr: |
          absent(readiness_exporter_build_info{__SEL__})
          unless on () (max(last_over_time(readiness:phase_live:max[1d])) == 1)
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: "No readiness-exporter is reporting"
          description: >-
            No target has exposed readiness_exporter_build_info to the Prometheus at
            {{ $externalURL }} for 15 minutes: the exporter is not deployed, not
            discovered (ServiceMonitor, scrape config) or every instance is down.
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessConfigReloadFailed
        expr: readiness_config_last_reload_successful{__SEL__} == 0
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: "readiness-exporter {{ $labels.instance }} rejected its new configuration"
          description: >-
            The last configuration reload on {{ $labels.instance }} failed; the previous
            configuration keeps running, so checks added or changed since are not
            evaluated. The exporter's log names the option to change.
          runbook_url: "__RUNBOOK__"

      # ------------------------------------------------------------ certificates
      # One alert per certificate (serial, Secret or SAML fingerprint), whichever
      # checks see it.
      - alert: ReadinessCertificateExpiringSoon
        expr: |
          min by (job, certificate) (readiness:certificate_expiry:seconds) < 30 * 86400
          and min by (job, certificate) (readiness:certificate_expiry:seconds) >= 7 * 86400
        for: 1h
        labels:
          severity: warning
        annotations:
          summary: "__CERT_FIRST_CHECK__: certificate __CERT__ expires in {{ $value | humanizeDuration }}"
          description: >-
            Certificate __CERT__ expires in {{ $value | humanizeDuration }}, within the
            30-day renewal window. Seen by: __CERT_CHECKS__.
          board_url: "__CERT_FIRST_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessCertificateExpiringCritical
        expr: |
          min by (job, certificate) (readiness:certificate_expiry:seconds) < 7 * 86400
          and min by (job, certificate) (readiness:certificate_expiry:seconds) > 0
        for: 15m
        labels:
          severity: critical
        annotations:
          summary: "__CERT_FIRST_CHECK__: certificate __CERT__ expires in {{ $value | humanizeDuration }}"
          description: >-
            Certificate __CERT__ expires in {{ $value | humanizeDuration }}, less than
            7 days: renew it now. Seen by: __CERT_CHECKS__.
          board_url: "__CERT_FIRST_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessCertificateExpired
        expr: min by (job, certificate) (readiness:certificate_expiry:seconds) <= 0
        for: 1m
        labels:
          severity: critical
        annotations:
          summary: "__CERT_FIRST_CHECK__: certificate __CERT__ has expired"
          description: >-
            Certificate __CERT__ is past its notAfter: clients refuse it. Seen by:
            __CERT_CHECKS__.
          board_url: "__CERT_FIRST_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessLegacyTlsAccepted
        expr: |
          count by (job, check) (
            readiness_tls_endpoint_version_info{__SEL__version=~"1\\.0|1\\.1", result="accepted"} == 1
          )
        for: 10m
        labels:
          severity: critical
        annotations:
          summary: "The endpoint of __CHECK__ accepts TLS 1.0 or 1.1"
          description: >-
            The endpoint probed by __CHECK__ completed a handshake limited to TLS 1.0
            or 1.1; both must be refused. Board row: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      # ------------------------------------------------------- backup and recovery
      - alert: ReadinessRecoveryPointTooOld
        expr: |
          max by (job, check, scenario) (
            readiness_rpo_seconds{__SEL__}
              > on (job, instance, check, scenario) readiness_rpo_target_seconds{__SEL__}
          )
        for: 10m
        labels:
          severity: critical
        annotations:
          summary: "Recovery point of scenario {{ $labels.scenario }} is older than its RPO"
          description: >-
            Scenario {{ $labels.scenario }} of __CHECK__ can only be restored to a point
            {{ $value | humanizeDuration }} ago, more than its recovery point objective.
            Board row: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessRestoreDrillSlowerThanRto
        expr: |
          max by (job, check, scenario) (
            readiness_restore_drill_duration_seconds{__SEL__}
              > on (job, instance, check, scenario) readiness_rto_target_seconds{__SEL__}
          )
        for: 30m
        labels:
          severity: warning
        annotations:
          summary: "Restore drill of scenario {{ $labels.scenario }} took longer than its RTO"
          description: >-
            The newest successful restore drill of scenario {{ $labels.scenario }}
            (__CHECK__) took {{ $value | humanizeDuration }}, more than its recovery time
            objective. Board row: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      # No successful drill within the configured maximum age, or none at all.
      - alert: ReadinessRestoreDrillOverdue
        expr: |
          max by (job, check, scenario) (
            time() - readiness_restore_drill_last_success_timestamp_seconds{__SEL__}
              > on (job, instance, check, scenario) readiness_restore_drill_max_age_seconds{__SEL__}
            or
            readiness_restore_drill_max_age_seconds{__SEL__}
              unless on (job, instance, check, scenario)
              readiness_restore_drill_last_success_timestamp_seconds{__SEL__}
          )
        for: 1h
        labels:
          severity: warning
        annotations:
          summary: "Restore drill of scenario {{ $labels.scenario }} is overdue"
          description: >-
            Scenario {{ $labels.scenario }} (__CHECK__) has no successful restore drill
            within its configured maximum age. Board row: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      # ----------------------------------------------------------------- platform
      # Workloads a PDB-coverage check (checklist 4.2.3: ids "4.2.3" or "4.2.3-...")
      # found non-compliant without a single PDB (none, or several: then the exporter
      # exports no allowed-disruptions series for the workload).
      - alert: ReadinessPdbMissing
        expr: |
          max by (job, check, namespace, workload, kind) (
            readiness_kubernetes_workload_compliant{__SEL__check=~"4\\.2\\.3|4\\.2\\.3-.+"} == 0
            unless on (job, instance, check, namespace, workload, kind)
            readiness_kubernetes_pdb_allowed_disruptions{__SEL__}
          )
        for: 30m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.kind }} {{ $labels.namespace }}/{{ $labels.workload }} has no usable PodDisruptionBudget"
          description: >-
            Replicated {{ $labels.kind }} {{ $labels.namespace }}/{{ $labels.workload }}
            is covered by no PodDisruptionBudget, or by several (evictions then fail):
            voluntary disruptions can take all its replicas down at once (__CHECK__).
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessPdbBlockingEvictions
        expr: |
          max by (job, check, namespace, workload, kind) (
            readiness_kubernetes_pdb_allowed_disruptions{__SEL__}
          ) == 0
        for: 30m
        labels:
          severity: warning
        annotations:
          summary: "PDB of {{ $labels.kind }} {{ $labels.namespace }}/{{ $labels.workload }} allows no disruption"
          description: >-
            The PodDisruptionBudget covering {{ $labels.kind }}
            {{ $labels.namespace }}/{{ $labels.workload }} allows 0 disruptions at its
            desired replicas: node drains and cluster upgrades block on it (__CHECK__).
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      # Lag of each replica seen by the primary, or of this replica itself, above the
      # check's configured maximum.
      - alert: ReadinessReplicationLag
        expr: |
          max without (instance, pod) (
            readiness_postgres_replica_replay_lag_seconds{__SEL__}
              > on (job, instance, check) group_left
              readiness_postgres_replay_lag_target_seconds{__SEL__}
            or
            readiness_postgres_replay_lag_seconds{__SEL__}
              > on (job, instance, check)
              readiness_postgres_replay_lag_target_seconds{__SEL__}
          )
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: "PostgreSQL replication lag above target ({{ $value | humanizeDuration }})"
          description: >-
            __CHECK__ measures a replay lag of {{ $value | humanizeDuration }}{{ if
            $labels.application_name }} on replica {{ $labels.application_name }}{{ end
            }}, above its configured maximum: a failover now would lose recent commits.
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"

      - alert: ReadinessRedisPersistenceFailing
        expr: |
          group by (job, check) (
            readiness_redis_rdb_last_bgsave_ok{__SEL__} == 0
            or readiness_redis_aof_last_write_ok{__SEL__} == 0
            or (
              readiness_redis_rdb_enabled{__SEL__} == 0
              and on (job, instance, check) readiness_redis_aof_enabled{__SEL__} == 0
            )
          )
        for: 10m
        labels:
          severity: critical
        annotations:
          summary: "Redis persistence is failing or off (__CHECK__)"
          description: >-
            The Redis checked by __CHECK__ has no working persistence: the last
            background save or AOF write failed, or neither RDB nor AOF is enabled. A
            restart loses data. Board row: __BOARD_ROW__ .
          board_url: "__BOARD_ROW__"
          runbook_url: "__RUNBOOK__"
"""

FRAGMENTS = {
    "__CERT_CHECKS__": _CERT_CHECKS,
    "__CERT_FIRST_CHECK__": _CERT_FIRST_CHECK,
    "__CERT_FIRST_ROW__": _CERT_FIRST_ROW,
    "__CERT__": _CERT_NAME,
    "__CHECK__": _CHECK,
    "__BOARD_ROW__": _BOARD_ROW,
}
"""Annotation fragments, replaced before the URLs (they contain `__BOARD__`)."""

PHASE_GATED = (
    "ReadinessCertificateExpiringCritical", "ReadinessCertificateExpired",
    "ReadinessLegacyTlsAccepted", "ReadinessRecoveryPointTooOld",
    "ReadinessRedisPersistenceFailing",
)
"""Critical alerts that page only in phase live; in the other phases the renderer adds a
`warning` twin of the same name (a ticket)."""
