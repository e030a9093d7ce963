"""The ``callwright`` command: serve | emulator | call | demo | bench."""

from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Callwright: a real-time voice agent server for ACS phone calls.",
)


def _print_version(value: bool) -> None:
    if value:
        from callwright import __version__

        typer.echo(f"callwright {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="print the version and exit"
    ),
) -> None:
    """Callwright: a real-time voice agent server for ACS phone calls."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8080, help="port to listen on"),
    workers: int | None = typer.Option(
        None,
        "--workers",
        envvar="CALLWRIGHT_WORKERS",
        min=1,
        help="server processes sharing the port (default: one per core when REDIS_URL is set, else 1)",
    ),
    plugins: list[str] | None = typer.Option(
        None, "--app", help="a module:function plugin to load (repeatable); sets CALLWRIGHT_PLUGINS"
    ),
    redis_dir: Path | None = typer.Option(
        None,
        "--redis-dir",
        envvar="CALLWRIGHT_REDIS_DIR",
        file_okay=False,
        help="data folder of the local redis-server started for --workers > 1 without REDIS_URL (default: temp)",
    ),
) -> None:
    """Run the server (settings from the environment and .env).

    SIGTERM drains: /ready answers 503, no new calls, active calls get SHUTDOWN_GRACE_SECONDS, then a
    goodbye and a hang-up; sessions are saved (or spilled to SESSION_SPILL_DIR) before the process exits.
    With --workers N > 1, N processes share the port and the calls (through Redis; a local redis-server
    is started when REDIS_URL is unset); a worker that dies is restarted and SIGTERM drains them all.
    """
    import os

    from callwright.scale.workers import run_serve

    if plugins:
        # Before the settings are read and the app is built, and inherited by every worker process.
        os.environ["CALLWRIGHT_PLUGINS"] = ",".join(plugins)
    raise typer.Exit(run_serve(host, port, workers, redis_dir))


keys_app = typer.Typer(no_args_is_help=True, help="Operator API keys: make one, or hash one for OPERATOR_API_KEYS.")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    role: str = typer.Option("operator", help="viewer (reads) or operator (also places and hangs up calls)"),
) -> None:
    """Make a random key; prints the key (for the client) and its OPERATOR_API_KEYS entry (for the server)."""
    from callwright.security.keys import main as keys_main

    raise typer.Exit(keys_main(["new", "--role", role]))


@keys_app.command("hash")
def keys_hash(
    key: str = typer.Argument("-", help="the key; '-' (default) reads it from stdin, keeping it out of shell history"),
    role: str | None = typer.Option(None, help="print a whole role:hash entry"),
) -> None:
    """Print the SHA-256 of an existing key, the form OPERATOR_API_KEYS stores."""
    from callwright.security.keys import main as keys_main

    raise typer.Exit(keys_main(["hash", key, *(["--role", role] if role else [])]))


@app.command()
def emulator(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8090, help="port to listen on"),
    access_key: str | None = typer.Option(None, help="base64 access key (generated when omitted)"),
    webhook: str | None = typer.Option(None, help="the app's Event Grid webhook URL (IncomingCall goes there)"),
    tls: bool = typer.Option(False, help="serve https with a self-signed certificate"),
) -> None:
    """Run the ACS emulator; prints its endpoint, the connection string for the app and its JWKS URL."""
    from callwright.emulator.cli import run_emulator

    run_emulator(host, port, access_key, webhook, tls=tls)


@app.command()
def call(
    script: Path = typer.Option(..., "--script", exists=True, dir_okay=False, help="virtual phone script (YAML)"),
    emulator_url: str = typer.Option("http://127.0.0.1:8090", "--emulator", help="the running emulator"),
    as_json: bool = typer.Option(False, "--json", help="print the call report alone, as JSON"),
    record: Path | None = typer.Option(None, "--record", help="write the stereo WAV and JSON report here"),
) -> None:
    """Place one scripted call through a running emulator against a running server.

    The script format (steps, waits, barge-in, DTMF, the report): `callwright docs phone-scripts`.
    """
    from callwright.emulator.phone.cli import run_call

    raise typer.Exit(run_call(script, emulator_url, as_json, record))


@app.command()
def demo(
    script: Path | None = typer.Option(None, "--script", exists=True, dir_okay=False, help="phone script (YAML)"),
    scenario: str | None = typer.Option(None, "--scenario", help="scenario to serve (default: insurance)"),
    interactive: bool = typer.Option(False, "--interactive", help="type what the caller says, line by line"),
    as_json: bool = typer.Option(False, "--json", help="print the call report alone, as JSON"),
    record: Path = typer.Option(Path("recordings"), "--record", help="folder for the stereo WAV and JSON report"),
) -> None:
    """Run the server and the emulator locally and place one demo call (no cloud needed)."""
    from callwright.demo import run_demo

    raise typer.Exit(run_demo(script=script, scenario=scenario, interactive=interactive, as_json=as_json,
                              record_dir=record))  # fmt: skip


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="a reduced run (under two minutes)"),
    as_json: bool = typer.Option(False, "--json", help="print the results alone, as one JSON object"),
    out: Path | None = typer.Option(None, "--out", help="also write the JSON results to this file"),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="also write a RESULTS.md-style report"),
    robustness: bool = typer.Option(
        False,
        "--robustness",
        help="only the robustness section: attack a local stack; count 5xx, deaf calls, forgeries, lost transcripts",
    ),
    understanding: bool = typer.Option(
        False,
        "--understanding",
        help="only the understanding section: natural-voice corpus; WER, intent accuracy, cut-offs, latency",
    ),
    scale: bool = typer.Option(
        False,
        "--scale",
        help="only the scale section: calls sustained with 1, 2, N workers; take-over time after SIGKILL",
    ),
) -> None:
    """Benchmark latency, barge-in, density and leaks, measured at the caller's ear by the emulator."""
    if scale:  # standalone too: python -m callwright.bench.scale --help
        from callwright.bench.scale import run_scale_command

        size = os.environ.get("CALLWRIGHT_BENCH_SIZE", "quick" if quick else "full")
        raise typer.Exit(run_scale_command(size, as_json, out, markdown_out))
    if understanding:  # standalone too: python -m callwright.bench.understanding --help
        from callwright.bench.understanding import run_understanding_command

        raise typer.Exit(run_understanding_command(quick, as_json, out, markdown_out))
    from callwright.bench.command import run_bench_command

    raise typer.Exit(run_bench_command(quick, as_json, out, markdown_out, robustness))


@app.command()
def realtime(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8765, help="port to listen on"),
    api_key: str | None = typer.Option(None, "--api-key", help="key clients must send (default: REALTIME_API_KEY)"),
) -> None:
    """Run the local realtime server (VoiceLive and OpenAI Realtime protocols) on the embedded engines."""
    from callwright.realtime.cli import run_realtime

    raise typer.Exit(run_realtime(host, port, api_key))


scenario_app = typer.Typer(no_args_is_help=True, help="Scenarios (agents as YAML): check one before serving it.")
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("check")
def scenario_check(
    path: Path = typer.Argument(..., help="a scenario folder, or its scenario.yaml"),
    plugins: list[str] | None = typer.Option(
        None, "--app", help="a module:function plug-in whose toolsets the scenario uses (repeatable)"
    ),
) -> None:
    """Load a scenario as the server would: a summary and exit 0, or one line naming file, line and field.

    The authoring guide (template variables, toolsets, handoffs, slots): `callwright docs scenarios`.
    """
    import os

    from callwright.scenarios.check import run_check

    specs = list(plugins or []) or [p for p in os.environ.get("CALLWRIGHT_PLUGINS", "").split(",") if p.strip()]
    code, lines = run_check(path, specs)
    for line in lines:
        typer.echo(line, err=code != 0)
    raise typer.Exit(code)


@app.command("docs")
def docs_command(
    topic: str = typer.Argument(..., help="phone-scripts | scenarios"),
) -> None:
    """Print a reference shipped inside the package: the phone-script format or the scenario guide."""
    from callwright.scenarios.check import packaged_doc

    try:
        typer.echo(packaged_doc(topic))
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
