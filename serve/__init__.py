"""onnxdigits.serve: the models as an HTTP service, and the same page as a static site.

`app` holds the FastAPI app (the HTTP API and the web page), `backend` the SDK objects it runs,
`deployments` the same app on Ray Serve, `web` a static site that runs the models in the browser
(its page in site/), `errors` what they raise on purpose (`ServeError` and its subclasses). Its
benchmark and load client are `onnxdigits.bench.serve`.
`import onnxdigits.serve` imports the errors alone, and `import onnxdigits` nothing here: FastAPI,
uvicorn and Ray load only with the module that needs them (`pip install 'onnxdigits[serve]'`,
`'onnxdigits[ray]'`).
"""

from .errors import AbsentModelError, OrtError, ServeError

__all__ = ["AbsentModelError", "OrtError", "ServeError"]
