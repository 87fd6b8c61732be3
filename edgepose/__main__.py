"""``python -m edgepose`` is the ``edgepose`` command."""

from .cli import main

main()
