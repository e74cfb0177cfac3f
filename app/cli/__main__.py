"""`python -m app.cli`: the same as the `synthbench` command."""

from app.cli import main

main()
