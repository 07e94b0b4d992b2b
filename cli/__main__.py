"""`python -m onnxdigits.cli`, the same as the `onnxdigits` command."""

from . import main

main()
