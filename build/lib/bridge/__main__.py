"""`python -m bridge`: the same CLI as the `bridge` console script."""

from bridge.cli import main

main()
