"""onnxdigits.serve: the models as an HTTP service, and the same page as a static site.

`app` holds the FastAPI app (the HTTP API and the web page), `backend` the SDK objects it runs,
`deployments` the same app on Ray Serve, `loadtest` the benchmark's client, `web` a static site
that runs the models in the browser (its page in site/).
Nothing here is imported by `import onnxdigits` or `import onnxdigits.serve`: FastAPI, uvicorn
and Ray load only with the module that needs them (`pip install 'onnxdigits[serve]'`,
`'onnxdigits[ray]'`).
"""
