"""The ``custsync`` command line."""

from __future__ import annotations

import click

from custsync.cli.audit_cmd import audit_command
from custsync.cli.demo_cmd import demo_command
from custsync.cli.dlq_cmd import dlq_group
from custsync.cli.embedded_cmd import embedded_group
from custsync.cli.health_cmd import health_command
from custsync.cli.operators_cmd import operators_group
from custsync.cli.publish_cmd import publish_command
from custsync.cli.sandbox_cmd import sandbox_command
from custsync.cli.serve_cmd import serve_command
from custsync.cli.status_cmd import status_command
from custsync.cli.worker_cmd import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="custsync")
def main() -> None:
    """Apply CRM customer-change events to partner APIs, with a DLQ operators can trust."""


main.add_command(worker_command)
main.add_command(publish_command)
main.add_command(dlq_group)
main.add_command(status_command)
main.add_command(health_command)
main.add_command(demo_command)
main.add_command(embedded_group)
main.add_command(sandbox_command)
main.add_command(serve_command)
main.add_command(operators_group)
main.add_command(audit_command)
