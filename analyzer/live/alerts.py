"""Where live alerts go besides ``alerts.jsonl``: standard output and syslog."""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
from collections.abc import Callable
from typing import Any

from analyzer.errors import ConfigError

Alert = dict[str, Any]

SYSLOG_LEVELS = {
    "critical": logging.CRITICAL,
    "high": logging.ERROR,
    "medium": logging.WARNING,
    "low": logging.INFO,
    "info": logging.INFO,
}


def stdout_sink(alert: Alert) -> None:
    """One JSON line per alert, flushed at once (pipe it into jq or a SIEM shipper)."""
    print(json.dumps(alert, sort_keys=True, default=str), flush=True)


def syslog_message(alert: Alert) -> str:
    """A one-line summary: the evidence stays in alerts.jsonl."""
    return (
        f"[{alert['severity']}] {alert['rule']}: {alert['title']}; "
        f"{alert['orig_h']} -> {alert['resp_h']} "
        f"({alert.get('calling_ae') or '?'} -> {alert.get('called_ae') or '?'}); "
        f"{alert['detail']}; uid={alert['uid']}"
    )


class SyslogSink:
    """``target``: a Unix socket path (default ``/dev/log``) or ``HOST:PORT`` for UDP."""

    def __init__(self, target: str) -> None:
        address: str | tuple[str, int]
        if target.startswith("/"):
            address = target
        else:
            host, _, port = target.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"--syslog {target!r}: expected a socket path or HOST:PORT")
            address = (host.strip("[]"), int(port))
        try:
            self.handler = logging.handlers.SysLogHandler(
                address=address,
                facility=logging.handlers.SysLogHandler.LOG_DAEMON,
                socktype=socket.SOCK_DGRAM,
            )
        except OSError as exc:
            raise ConfigError(f"--syslog {target}: {exc.strerror or exc}") from None
        self.handler.ident = "dicom-analyzer: "
        self.logger = logging.Logger("dicom_analyzer.alerts")
        self.logger.addHandler(self.handler)

    def __call__(self, alert: Alert) -> None:
        level = SYSLOG_LEVELS.get(str(alert.get("severity")), logging.WARNING)
        self.logger.log(level, syslog_message(alert))

    def close(self) -> None:
        self.handler.close()


def ecs_stdout_sink(alert: Alert) -> None:
    """``stdout_sink`` of the alert as an ECS document (``--alerts-format ecs``)."""
    from analyzer.findings.ecs import to_ecs

    stdout_sink(to_ecs(alert))


def alert_sinks(
    to_stdout: bool, syslog: str | None, ecs: bool = False
) -> list[Callable[[Alert], None]]:
    sinks: list[Callable[[Alert], None]] = []
    if to_stdout:
        sinks.append(ecs_stdout_sink if ecs else stdout_sink)
    if syslog:
        sinks.append(SyslogSink(syslog))
    return sinks
