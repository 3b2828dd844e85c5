from warden.cli.main import app

app(prog_name="warden")
