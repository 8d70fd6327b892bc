"""`python -m snn2hw` (what torchrun's `-m snn2hw` runs): the CLI."""
from .cli import main

main()
