"""onnxdigits.serve: the models as an HTTP service, and the files other servers need.

`app` holds the FastAPI app (the HTTP API and the web page), `models` the SDK objects it runs,
`deployments` the same app on Ray Serve, `triton` a Triton model repository, `web` a static
site that runs the models in the browser (its page in site/). Its benchmark and load client are
`onnxdigits.bench.serve`.
Nothing here is imported by `import onnxdigits` or `import onnxdigits.serve`: FastAPI, uvicorn
and Ray load only with the module that needs them (`pip install 'onnxdigits[serve]'`,
`'onnxdigits[ray]'`).
"""
