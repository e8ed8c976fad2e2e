from emotional_engine.cli import app

app()
