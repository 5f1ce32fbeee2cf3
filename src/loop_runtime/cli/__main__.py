"""``python -m loop_runtime.cli``: the click CLI itself (``python -m loop_runtime`` is the fast entry point)."""

from . import main

main()
