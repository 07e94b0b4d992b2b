"""The `onnxdigits` command.

`main` (in `main.py`) is the group with its error boundary and shared options; the commands live
by audience: the digit commands in `digits.py`, the training commands in `training.py`, the
benchmarks (`onnxdigits bench ...`) in `bench.py`, scoring in `score.py`, the service in
`serve.py`, the sets written for other runtimes (a static site for browsers, a Triton repository)
in `exports.py`.
"""

from .bench import bench_group
from .digits import (
    classify_command,
    embed_command,
    grid_command,
    info_command,
    interpolate_command,
    reconstruct_command,
    sample_command,
    scatter_command,
    verify_command,
)
from .exports import export_triton_command, export_web_command
from .main import main
from .score import score_command
from .serve import serve_command
from .training import (
    TRAIN_EXTRA,
    evaluate_command,
    export_command,
    fit_classes_command,
    rewrite_command,
    train_command,
    write_metadata_command,
)

for _command in (
    grid_command,
    sample_command,
    classify_command,
    embed_command,
    reconstruct_command,
    interpolate_command,
    scatter_command,
    info_command,
    verify_command,
    train_command,
    export_command,
    rewrite_command,
    fit_classes_command,
    write_metadata_command,
    evaluate_command,
    bench_group,
    score_command,
    export_triton_command,
    export_web_command,
    serve_command,
):
    main.add_command(_command)

__all__ = ["TRAIN_EXTRA", "main"]
