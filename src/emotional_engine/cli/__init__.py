"""The `emotional-engine` command line: a thin typer layer over typed entry points. `main.py` holds the
story commands (lm, generate, analyze, arcs, cultures, serve), `play.py` interactive play and its session
files (play, card, and the `lore` group), `optimize.py` the optimisation pipeline; `keys` and `train` are
groups."""

from emotional_engine.cli import play
from emotional_engine.cli.keys import keys_app
from emotional_engine.cli.main import app
from emotional_engine.cli.optimize import optimize
from emotional_engine.cli.train import train_app

app.command()(play.play)
app.command()(play.card)
app.command()(optimize)
app.add_typer(play.lore_app, name="lore")
app.add_typer(keys_app, name="keys")
app.add_typer(train_app, name="train")

__all__ = ["app"]
