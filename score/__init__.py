"""onnxdigits.score: batch inference over data sets into Parquet.

`pip install 'onnxdigits[score]'` brings pyarrow and tqdm.

`score` runs a job in one process; `onnxdigits.score.cluster.score_on_ray` runs the same job as a
Ray Data pipeline (`pip install 'onnxdigits[ray]'`). Both write the rows of
`output_schema(model)`, and both read inputs with `inputs.plan` and score them with `Scorer`.
"""

from .errors import NothingScoredError, OutputError, PoolError, ScoreError
from .job import Summary, score
from .scorer import Scorer, output_schema

__all__ = [
    "NothingScoredError",
    "OutputError",
    "PoolError",
    "ScoreError",
    "Scorer",
    "Summary",
    "output_schema",
    "score",
]
