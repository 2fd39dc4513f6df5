"""Command-line interface (Typer lives here and nowhere else)."""
