"""``fedlearn coordinator``'s options through typer's runner; the running coordinator is tested in tests/web."""

from __future__ import annotations

from typer.testing import CliRunner

from fedlearn.cli.deployment import app

runner = CliRunner()


def test_request_limit_below_one_byte_is_a_usage_error_naming_the_option() -> None:
    result = runner.invoke(app, ["coordinator", "--max-request-bytes", "0"], env={"FEDLEARN_ADMIN_TOKEN": "x" * 32})

    said = " ".join(result.stderr.replace("│", " ").split())  # typer draws the message in a wrapped box
    assert result.exit_code == 2
    assert "Invalid value for '--max-request-bytes'" in said
