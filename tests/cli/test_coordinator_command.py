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


def test_a_node_share_above_the_whole_upload_buffer_is_refused_naming_both(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        app,
        ["coordinator", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store", f"sqlite:///{tmp_path}/s.db",
         "--upload-buffer-bytes", "1000", "--node-upload-bytes", "2000"],
        env={"FEDLEARN_ADMIN_TOKEN": "x" * 32},
    )  # fmt: skip

    assert result.exit_code == 2
    assert "node_upload_bytes" in result.stderr and "upload_buffer_bytes" in result.stderr
