"""The ``callwright`` command: serve | emulator | call | demo | bench."""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Callwright: a real-time voice agent server for ACS phone calls.",
)


@app.callback()
def _root() -> None:
    """Callwright: a real-time voice agent server for ACS phone calls."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8080, help="port to listen on"),
) -> None:
    """Run the server (settings from the environment and .env)."""
    import uvicorn

    from callwright.app import create_app
    from callwright.config import load_settings

    settings = load_settings()
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, ws="websockets-sansio")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
